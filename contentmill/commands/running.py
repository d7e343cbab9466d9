"""How every command runs: SIGTERM and SIGHUP end it as an error does, so what it started (a temporary Prefect
API, local engines) stops with it and what was finished is kept."""

from __future__ import annotations

import signal
import sys
from typing import NoReturn

import typer


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
