"""The ``contentmill`` executable: ``video`` and ``demo`` start without importing the other commands.

Importing every command (the ledger's reports, scipy's statistics, the router, the server) takes about two
seconds of CPU; a rerun of a finished video answers from the store in less than that, so those two commands run
on an app of their own. Every other command runs on the full app of ``contentmill.cli``. Both end on SIGTERM and
SIGHUP as on an error, so what a command started (a temporary Prefect API, local engines) stops with it.
"""

from __future__ import annotations

import signal
import sys
from typing import NoReturn

import typer

_OWN_APP = ("video", "demo")


def _stopped(signum: int) -> NoReturn:
    print(f"contentmill: stopped by {signal.Signals(signum).name}; what was finished is kept", file=sys.stderr)
    raise SystemExit(128 + signum)


def run(app: typer.Typer) -> None:
    """Run ``app`` with SIGTERM and SIGHUP ending it as an error does (the default would end it on the spot)."""

    def stop(signum: int, _frame: object) -> None:
        _stopped(signum)

    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, stop)
    try:
        app()
    except BaseException as error:
        # A flow run raises Prefect's TerminationSignal on SIGTERM in its stead; without a flow run, Prefect (a
        # second of imports) is not loaded and cannot have raised it.
        prefect_errors = sys.modules.get("prefect.exceptions")
        if prefect_errors is not None and isinstance(error, prefect_errors.TerminationSignal):
            _stopped(error.signal)
        raise


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
