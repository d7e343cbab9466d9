"""``contentmill route explain|rank|floor``: why the router chose a model, how it would rank a tier now, and the
cheapest model that meets a quality floor."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from contentmill.catalog import load_catalog
from contentmill.commands import JsonOption, emit_json, fail, parse_tags, settings_or_fail
from contentmill.errors import ContentmillError
from contentmill.ledger import LedgerStore, settings_url
from contentmill.routing import DIMENSIONS, Candidate, Router, Weights, find_decision, load_routing_config
from contentmill.settings import Settings

route_app = typer.Typer(help="Model routing: explain a decision, rank a tier, meet a quality floor.",
                        no_args_is_help=True)
console = Console()


def _table(title: str, candidates: list[Candidate]) -> Table:
    """One row per candidate: each dimension's weighted contribution, the total, samples, any exclusion."""
    table = Table(title=title, box=box.SIMPLE)
    table.add_column("model", no_wrap=True)
    for name in (*(d[:4] for d in DIMENSIONS), "total", "calls"):
        table.add_column(name, justify="right", no_wrap=True, min_width=5)
    excluded = any(c.excluded for c in candidates)
    if excluded:
        table.add_column("excluded")
    for c in candidates:
        cells = [f"{c.contributions[d]:.3f}" for d in DIMENSIONS]
        row = [c.model, *cells, f"{c.total:.3f}", str(c.samples.get("calls", 0))]
        table.add_row(*row, *([c.excluded or ""] if excluded else []))
    return table


def _router(settings: Settings, store: LedgerStore) -> Router:
    """A router over the settings' catalog and routing file, with the ledger's statistics read now."""
    router = Router(load_catalog(settings.catalog_file), store, load_routing_config(settings.routing_file),
                    budgets=store.budgets())
    router.refresh()
    return router


@route_app.command()
def explain(
    request_id: Annotated[str, typer.Argument(help="A decision id, the request id of a routed call, or its call id.")],
    json_out: JsonOption = False,
) -> None:
    """Show why a model was chosen: every candidate's per-dimension contribution, the weights and the reason."""
    settings = settings_or_fail()
    try:
        with LedgerStore(settings_url(settings)) as store:
            row = find_decision(store, request_id)
    except ContentmillError as exc:
        fail(str(exc))
    if row is None:
        fail(f"no routing decision for {request_id!r}; give a decision id, a routed call's request id or call id")
    data: dict[str, Any] = {**row, "ts": row["ts"].isoformat()}
    if json_out:
        emit_json(data)
        return
    weights = ", ".join(f"{k} {v:.2f}" for k, v in row["weights"].items())
    console.print(f"decision {row['id']} at {data['ts']}: [bold]{row['chosen_model']}[/bold] for "
                  f"{row['task_kind']} (tier {row['tier']}, priority {row['priority']})", highlight=False)
    if row["downgraded_from"]:
        console.print(f"downgraded from tier {row['downgraded_from']}", highlight=False)
    console.print(f"weights: {weights}", highlight=False)
    console.print(f"reason: {row['reason']}", markup=False, highlight=False)
    if row["candidates"]:
        candidates = [Candidate.from_dict(c) for c in row["candidates"]]
        console.print(_table("weighted contribution per dimension", candidates))


@route_app.command()
def rank(
    task: Annotated[str, typer.Option("--task", help="Task kind, e.g. chat, summarize, product_description.")] = "chat",
    language: Annotated[str, typer.Option(help="Language of the output (ISO 639-1).")] = "en",
    tier: Annotated[str | None, typer.Option(help="Tier (default: the task's tier, else the default tier).")] = None,
    priority: Annotated[str, typer.Option(help="low, normal or high.")] = "normal",
    weights: Annotated[str | None, typer.Option(help="e.g. quality=0.5,cost=0.5 (others weigh 0).")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable (budgets match on tags).")] = None,
    json_out: JsonOption = False,
) -> None:
    """Rank a tier's models now from the ledger's live statistics (nothing is called or recorded)."""
    settings = settings_or_fail()
    tags = parse_tags(tag)
    try:
        with LedgerStore(settings_url(settings)) as store:
            decision = _router(settings, store).choose(task, language, tier, priority, tags,
                                                       weights=Weights.of(weights))
    except ContentmillError as exc:
        fail(str(exc))
    if json_out:
        emit_json(decision.as_dict())
        return
    console.print(f"[bold]{decision.model}[/bold], then {', '.join(decision.fallbacks) or 'no fallback'}",
                  highlight=False)
    console.print(f"reason: {decision.reason}", markup=False, highlight=False)
    console.print(_table(f"tier {decision.tier}: weighted contribution per dimension", list(decision.candidates)))


@route_app.command()
def floor(
    minimum: Annotated[float, typer.Argument(min=0.0, max=1.0, help="The quality floor, a score from 0 to 1.")],
    tier: Annotated[str | None, typer.Option(help="Only this tier's models (default: every scored model).")] = None,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999)] = 0.95,
    by_template: Annotated[bool, typer.Option("--by-template", help="Model and template version pairs.")] = False,
    json_out: JsonOption = False,
) -> None:
    """The cheapest model whose quality scores clear the floor with confidence, and the saving against the best."""
    settings = settings_or_fail()
    try:
        with LedgerStore(settings_url(settings)) as store:
            choice = _router(settings, store).quality_floor(minimum, tier=tier, confidence=confidence,
                                                            by_template=by_template)
    except ContentmillError as exc:
        fail(str(exc))
    if json_out:
        emit_json(choice.as_dict())
        return
    chosen, best = choice.chosen, choice.best
    console.print(f"[bold]{chosen.model}[/bold]{'@' + chosen.template_version if chosen.template_version else ''}: "
                  f"quality {chosen.mean:.3f} (lower bound {chosen.lower:.3f}, {chosen.n} scores), "
                  f"${chosen.cost_per_output_usd:.6f} an output; against {best.model} "
                  f"${best.cost_per_output_usd:.6f}: saves ${choice.saving_usd_per_output:.6f} "
                  f"({choice.saving_share:.0%}) an output", highlight=False)
    table = Table(title=f"floor {minimum} at {confidence:.0%} confidence", box=box.SIMPLE)
    for column in ("model", "template", "scores", "mean", "lower bound", "USD/output", "meets"):
        table.add_column(column, justify="left" if column in ("model", "template") else "right")
    for arm in choice.arms:
        table.add_row(arm.model, arm.template_version or "-", str(arm.n), f"{arm.mean:.3f}",
                      "-" if arm.lower is None else f"{arm.lower:.3f}", f"{arm.cost_per_output_usd:.6f}",
                      "yes" if arm.meets_floor else "no")
    console.print(table)
