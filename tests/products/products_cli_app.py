"""The ``products`` command on a typer app of its own, run as a script by the CLI tests (the tests then do not
depend on how ``contentmill.cli`` registers the other commands)."""

from __future__ import annotations

import typer

from contentmill.commands.products import products

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(products)

if __name__ == "__main__":
    app()
