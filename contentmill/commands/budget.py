"""``contentmill budget``: hard and soft USD budgets per team, project, API type, model or any tag.

Budgets live in the ledger (CONTENTMILL_DATABASE_URL, else the SQLite file in CONTENTMILL_DATA_DIR), so every
process that shares it applies them. ``show`` gives each budget's spend this period and its forecast.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from contentmill.commands import JsonOption, emit_json, fail, open_ledger
from contentmill.errors import ContentmillError
from contentmill.ledger import Budget, forecast_budget

budget_app = typer.Typer(help="USD budgets per team, project, API type, model or any tag.", add_completion=False)
console = Console()


class PeriodChoice(StrEnum):
    day = "day"
    week = "week"
    month = "month"





def _scope(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        fail(f"--scope takes KEY=VALUE, e.g. team=shop or api_type=video (got {text!r})")
    return key.strip(), value.strip()


@budget_app.command("set")
def set_budget(
    scope: Annotated[str, typer.Option(help="KEY=VALUE: team=shop, project=launch, api_type=video, model=...")],
    usd: Annotated[float, typer.Option(min=0.000001, help="The limit in USD for each period.")],
    period: Annotated[PeriodChoice, typer.Option(help="Calendar period the limit applies to.")] = PeriodChoice.month,
    soft: Annotated[float, typer.Option(min=1, max=100, help="Alert when this percent is used.")] = 80.0,
    tz: Annotated[str, typer.Option(help="Time zone the period follows (IANA name).")] = "UTC",
    soft_only: Annotated[bool, typer.Option("--soft-only", help="Only alert; never refuse calls.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Set (or replace) a budget; hard by default: calls that could pass it are refused."""
    key, value = _scope(scope)
    store = open_ledger()
    try:
        budget = store.set_budget(Budget(scope_key=key, scope_value=value, period=period.value, limit_usd=usd,
                                         timezone=tz, soft_pct=soft, hard=not soft_only))
    except ContentmillError as exc:
        fail(str(exc))
    finally:
        store.close()
    if json_out:
        emit_json({"budget": _budget_dict(budget)})
        return
    kind = "soft" if soft_only else "hard"
    console.print(f"budget {budget.name}: {kind} limit ${usd:,.6f} per {period.value} ({tz}), alert at {soft:g}%")


def _budget_dict(budget: Budget) -> dict[str, Any]:
    return {"scope": f"{budget.scope_key}={budget.scope_value}", "period": budget.period,
            "limit_usd": budget.limit_usd, "timezone": budget.timezone, "soft_pct": budget.soft_pct,
            "hard": budget.hard}


@budget_app.command("show")
def show(json_out: JsonOption = False) -> None:
    """Every budget with its spend this period, the share used and the period-end forecast."""
    store = open_ledger(sweep=True)
    now = datetime.now(UTC)
    try:
        rows = []
        for budget in store.budgets():
            forecast = forecast_budget(store, budget, now)
            rows.append({**_budget_dict(budget), "spent_usd": forecast.spent_usd,
                         "used_pct": 100.0 * forecast.spent_usd / budget.limit_usd,
                         "forecast_usd": forecast.projected_usd, "over_budget_forecast": forecast.over_budget,
                         "days_until_exhausted": forecast.days_until_exhausted,
                         "period_start": forecast.period_start.isoformat(),
                         "period_end": forecast.period_end.isoformat()})
    except ContentmillError as exc:
        fail(str(exc))
    finally:
        store.close()
    if json_out:
        emit_json({"budgets": rows})
        return
    if not rows:
        console.print("no budgets; set one with: contentmill budget set --scope team=NAME --usd AMOUNT")
        return
    table = Table(title="budgets (USD)")
    for column in ("scope", "period", "kind", "limit", "spent", "used", "forecast", "exhausted in"):
        table.add_column(column, justify="left" if column in ("scope", "period", "kind") else "right")
    for row in rows:
        days = row["days_until_exhausted"]
        table.add_row(
            row["scope"], row["period"], "hard" if row["hard"] else "soft", f"{row['limit_usd']:,.4f}",
            f"{row['spent_usd']:,.4f}", f"{row['used_pct']:.1f}%", f"{row['forecast_usd']:,.4f}",
            "-" if days is None else f"{days:.1f} d",
        )
    console.print(table)


@budget_app.command("delete")
def delete(
    scope: Annotated[str, typer.Option(help="KEY=VALUE of the budget.")],
    period: Annotated[PeriodChoice, typer.Option()] = PeriodChoice.month,
    json_out: JsonOption = False,
) -> None:
    """Remove a budget."""
    key, value = _scope(scope)
    store = open_ledger()
    try:
        removed = store.delete_budget(key, value, period.value)
    finally:
        store.close()
    if not removed:
        fail(f"no {period.value} budget for {key}={value}")
    if json_out:
        emit_json({"deleted": f"{key}={value}", "period": period.value})
    else:
        console.print(f"deleted the {period.value} budget of {key}={value}")
