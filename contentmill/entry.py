"""The ``contentmill`` executable: ``video`` and ``demo`` start without importing the other commands.

Importing every command (the ledger's reports, scipy's statistics, the router, the server) takes about two
seconds of CPU; a rerun of a finished video answers from the store in less than that, so those two commands run
on an app of their own. Every other command runs on the full app of ``contentmill.cli``. Both end on SIGTERM and
SIGHUP as on an error, so what a command started (a temporary Prefect API, local engines) stops with it.
"""

from __future__ import annotations

import sys

import typer

from contentmill.commands.running import run

_OWN_APP = ("video", "demo")


def video_app() -> typer.Typer:
    from contentmill.commands.video import demo, video

    app = typer.Typer(name="contentmill", add_completion=False, pretty_exceptions_enable=False)
    app.command()(video)
    app.command()(demo)

    @app.callback()
    def _group() -> None:
        """Text, speech and video generation with AI models at a cost you can predict."""

    return app


def main() -> None:
    if sys.argv[1:2] and sys.argv[1] in _OWN_APP:
        run(video_app())
        return
    from contentmill.cli import main as full

    full()


if __name__ == "__main__":
    main()
