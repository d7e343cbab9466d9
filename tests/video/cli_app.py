"""The ``video`` and ``demo`` commands on a typer app of their own, run as a script by the CLI tests (the
tests then do not depend on how ``contentmill.cli`` registers them)."""

from __future__ import annotations

import typer

from contentmill.commands.video import demo, video

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(video)
app.command()(demo)

if __name__ == "__main__":
    app()
