"""Sub-commands of the ``contentmill`` CLI, one typer app per module, and the conventions they share:
``--json`` prints exactly one JSON object on stdout; an error is one line on stderr and exit code 1."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from contentmill.errors import ContentmillError, LedgerError
from contentmill.ledger import LedgerSpool, LedgerStore, settings_url
from contentmill.settings import Settings, get_settings

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, then exit non-zero."""
    print(f"contentmill: {message}".replace("\n", " "), file=sys.stderr)
    raise typer.Exit(code)


def emit_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")


def settings_or_fail() -> Settings:
    """The settings, or a one-line error naming the variable to fix."""
    try:
        settings = get_settings()
    except ContentmillError as exc:
        fail(str(exc))
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if settings.log_level.upper() != "DEBUG":
        # psycopg warns when it closes a connection whose failed write the command has already reported in its
        # one line ("error ignored terminating <psycopg.Pipeline ...>"): noise for the user, kept for DEBUG.
        logging.getLogger("psycopg").setLevel(logging.ERROR)
    return settings


def sweep_dead_calls(settings: Settings) -> None:
    """Charge the reservations of calls whose process died before reading the ledger, so a report, the alerts
    and the budgets show that money at once (flagged, with an alert), whichever command runs first. A sweep
    that cannot run (Redis unreachable) is said on stderr and the command goes on with what the ledger holds."""
    import asyncio

    from contentmill.gateway import Gateway

    async def sweep() -> float:
        async with Gateway(settings.model_copy(update={"cache_enabled": False})) as gateway:
            return sum(record.cost_usd for record in await gateway.sweep_orphans())

    try:
        charged = asyncio.run(sweep())
    except LedgerError:
        return  # the command's own reading of the ledger says what is wrong with it, in one line
    except ContentmillError as exc:
        print(f"contentmill: calls of stopped processes were not swept this time: {exc}", file=sys.stderr)
        return
    if charged:
        print(f"contentmill: charged {charged:.6f} USD reserved by calls whose process stopped mid-call "
              "(outcome orphaned, flagged)", file=sys.stderr)


def open_ledger(*, sweep: bool = False) -> LedgerStore:
    """The ledger of the current settings, holding the records that waited in the spool; with ``sweep``, after the
    calls of processes that died were charged (for commands that report spend)."""
    settings = settings_or_fail()
    if sweep:
        sweep_dead_calls(settings)
    try:
        store = LedgerStore(settings_url(settings))
    except ContentmillError as exc:
        fail(str(exc))
    drain_spool(store, settings)
    return store


def drain_spool(store: LedgerStore, settings: Settings) -> None:
    """Write the call records that wait in the data directory's spool (the ledger refused them when their calls
    ended) before the command reads the ledger; one line on stderr when they cannot be written now."""
    spool = LedgerSpool.for_settings(settings)
    try:
        spool.drain(store)
    except LedgerError as exc:
        print(f"contentmill: call records still wait in the spool: {exc}", file=sys.stderr)


def spooled_rows() -> int:
    """How many call records wait in the data directory's spool for the ledger."""
    try:
        return LedgerSpool.for_settings(settings_or_fail()).waiting()
    except LedgerError as exc:
        fail(str(exc))


def parse_tags(pairs: list[str] | None) -> dict[str, str]:
    """``--tag KEY=VALUE`` options as a mapping, or a one-line error naming the bad one."""
    tags: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"--tag takes KEY=VALUE (got {pair!r})")
        tags[key.strip()] = value.strip()
    return tags


def wide_console(width: int = 120) -> Console:
    """A rich console for tables; writing to a pipe or a file it is ``width`` wide rather than rich's 80 columns,
    so that wide tables keep every cell whole."""
    console = Console()
    return console if console.is_terminal else Console(width=width)
