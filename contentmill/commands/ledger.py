"""``contentmill report`` and ``contentmill alerts``: spend by any tag, and the alerts raised.

The ledger is CONTENTMILL_DATABASE_URL when set, else ``ledger.sqlite3`` in CONTENTMILL_DATA_DIR. Times are
ISO 8601; one without a zone is taken as UTC. Call records waiting in the data directory's spool (the ledger
database refused them) are written before the ledger is read; ``report`` says how many still wait
(``spooled_rows``). Mount with ``app.add_typer(report_app, name="report")`` and
``app.add_typer(alerts_app, name="alerts")``; ``python -m contentmill.commands.ledger`` runs both alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from contentmill.commands import JsonOption, emit_json, fail, open_ledger, spooled_rows
from contentmill.errors import ContentmillError
from contentmill.ledger.records import Alert
from contentmill.ledger.report import Report, report

report_app = typer.Typer(
    help="Spend and usage by team, project, API type, model or any tag.", add_completion=False
)
alerts_app = typer.Typer(help="Alerts raised by the ledger's rules.", add_completion=False)
console = Console()

ByOption = Annotated[
    str,
    typer.Option(
        "--by", help="team, project, api_type, model, provider, outcome or any tag; several as team,model."
    ),
]
SinceOption = Annotated[str | None, typer.Option(help="ISO start (default: 24 hours before --until).")]
UntilOption = Annotated[str | None, typer.Option(help="ISO end, exclusive (default: now).")]


class Bucket(StrEnum):
    hour = "hour"
    day = "day"


def parse_time(text: str, option: str) -> datetime:
    """An ISO 8601 instant; without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option} takes an ISO 8601 time such as 2025-05-01T00:00:00+00:00 (got {text!r})")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def window(since: str | None, until: str | None, default: timedelta) -> tuple[datetime, datetime]:
    end = parse_time(until, "--until") if until else datetime.now(UTC)
    start = parse_time(since, "--since") if since else end - default
    return start, end


def usd(value: float) -> str:
    return f"${value:,.6f}"


def report_table(result: Report) -> Table:
    span = f"{result.since:%Y-%m-%d %H:%M} to {result.until:%Y-%m-%d %H:%M} UTC"
    table = Table(title=f"spend by {', '.join(result.by) or 'time'}, {span}")
    keys = [*result.by, *(["bucket"] if result.bucket else [])]
    for key in keys:
        table.add_column(key, no_wrap=True)
    for column in ("calls", "cost", "saved", "in tok", "out tok", "chars", "seconds", "errors", "waited s"):
        table.add_column(column, justify="right", min_width=10 if column in ("cost", "saved") else None)

    def cells(row: dict[str, Any]) -> list[str]:
        return [
            f"{row['calls']:,}", usd(row["cost_usd"]), usd(row["saved_usd"]), f"{row['input_tokens']:,}",
            f"{row['output_tokens']:,}", f"{row['characters']:,}", f"{row['seconds']:,.1f}",
            f"{row['errors']:,}", f"{row['admission_wait_s']:,.1f}",
        ]

    for row in result.rows:
        table.add_row(*["(none)" if row[k] is None else str(row[k]) for k in keys], *cells(row))
    table.add_section()
    table.add_row("total", *[""] * (len(keys) - 1), *cells(result.total), style="bold")
    return table


@report_app.callback(invoke_without_command=True)
def report_command(
    by: ByOption = "team",
    since: SinceOption = None,
    until: UntilOption = None,
    bucket: Annotated[Bucket | None, typer.Option(help="Also group by UTC hour or day.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Spend, tokens, characters, seconds and calls grouped by a tag or column, from the ledger."""
    dims = [part.strip() for part in by.split(",") if part.strip()]
    store = open_ledger(sweep=True)  # first: what the sweep charges now belongs in the window
    start, end = window(since, until, timedelta(days=1))
    try:
        result = report(store, dims, start, end, bucket=bucket.value if bucket else None)
    except ContentmillError as exc:
        fail(str(exc))
    finally:
        store.close()
    waiting = spooled_rows()
    if json_out:
        data = result.as_dict()
        emit_json({**data, "by": dims[0] if len(dims) == 1 else dims, "spooled_rows": waiting})
        return
    console.print(report_table(result))
    if waiting:
        console.print(f"{waiting} call record{'s' if waiting > 1 else ''} wait in the spool of the data directory, "
                      "not counted above: the ledger could not be written when their calls ended", markup=False)


def alerts_table(found: list[Alert]) -> Table:
    table = Table(title=f"{len(found)} alert{'' if len(found) == 1 else 's'}")
    for column in ("time (UTC)", "severity", "rule", "subject", "message"):
        table.add_column(column, no_wrap=column != "message")
    styles = {"info": "", "warning": "yellow", "critical": "bold red"}
    for alert in found:
        table.add_row(
            f"{alert.ts:%Y-%m-%d %H:%M:%S}", Text(alert.severity, style=styles[alert.severity]), alert.rule,
            Text(alert.subject), Text(alert.message),
        )
    return table


@alerts_app.callback(invoke_without_command=True)
def alerts_command(
    since: Annotated[str | None, typer.Option(help="ISO start (default: 7 days ago).")] = None,
    rule: Annotated[str | None, typer.Option(help="Only this rule, e.g. budget_used.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 200,
    json_out: JsonOption = False,
) -> None:
    """Alerts stored in the ledger, newest first."""
    start = parse_time(since, "--since") if since else datetime.now(UTC) - timedelta(days=7)
    store = open_ledger(sweep=True)
    try:
        found = store.alerts(start, rule=rule, limit=limit)
    except ContentmillError as exc:
        fail(str(exc))
    finally:
        store.close()
    if json_out:
        emit_json({"since": start.isoformat(), "alerts": [alert.as_dict() for alert in found]})
        return
    console.print(alerts_table(found))


def standalone() -> typer.Typer:
    """Both commands on their own app, as ``contentmill`` mounts them."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
    app.add_typer(report_app, name="report")
    app.add_typer(alerts_app, name="alerts")
    return app


if __name__ == "__main__":
    standalone()()
