"""``contentmill experiment``: A/B tests of prompt template versions (or models), kept in the ledger."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from contentmill.commands import JsonOption, emit_json, fail, parse_tags, settings_or_fail, wide_console
from contentmill.errors import ContentmillError
from contentmill.experiments.run import TrialRequest, run_trials
from contentmill.experiments.status import Status, status
from contentmill.experiments.store import METRICS, Experiment, ExperimentStore, parse_arms, parse_split
from contentmill.gateway import Gateway
from contentmill.ledger.store import LedgerStore, settings_url
from contentmill.prompts.library import TemplateLibrary
from contentmill.quality.pick import pick_scorer

experiment_app = typer.Typer(help="A/B experiments between template versions: start, run, status, stop.",
                             no_args_is_help=True)
console = wide_console()
T = TypeVar("T")


def _with_store(action: Callable[[ExperimentStore], T]) -> T:
    settings = settings_or_fail()
    try:
        with LedgerStore(settings_url(settings)) as store:
            return action(ExperimentStore(store))
    except ContentmillError as exc:
        fail(str(exc))


def print_status(result: Status) -> None:
    e = result.experiment
    table = Table(title=f"experiment {e.name} ({e.state}, metric {e.metric}"
                        + (f", winner {e.winner}" if e.winner else "") + ")")
    for column in ("arm", "template", "share %", "calls", "tokens/call", "USD/call", "quality", "scored"):
        table.add_column(column, justify="left" if column in ("arm", "template") else "right")

    def cell(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for arm in result.arms:
        table.add_row(arm.arm, arm.spec, f"{arm.share_pct:g}", str(arm.calls), cell(arm.tokens_mean, 1),
                      cell(arm.cost_mean_usd, 8), cell(arm.quality_mean, 3), str(arm.quality_n))
    console.print(table)
    if result.test is not None:
        t = result.test
        console.print(f"Welch's t-test, {result.leader} - {result.runner_up}: difference {t.diff:+.4g} "
                      f"({t.confidence:.0%} CI {t.ci_low:+.4g} .. {t.ci_high:+.4g}), t = {t.t:.3g}, "
                      f"df = {t.df:.1f}, p = {t.p:.3g}", highlight=False)
    console.print(result.verdict, highlight=False)


@experiment_app.command("start")
def start(
    name: Annotated[str, typer.Argument(help="The experiment's name.")],
    arms: Annotated[str, typer.Option(help="a=TEMPLATE@VERSION,b=TEMPLATE@VERSION (+provider:model optional).")],
    split: Annotated[str | None, typer.Option(help="Percent per arm in order, e.g. 50,50 (default: even).")] = None,
    metric: Annotated[str, typer.Option(help="What decides the winner: tokens, cost or quality.")] = "tokens",
    json_out: JsonOption = False,
) -> None:
    """Start splitting traffic between template versions by request hash."""
    settings = settings_or_fail()
    try:
        parsed = parse_arms(arms)
        if metric not in METRICS:
            fail(f"--metric is one of {', '.join(METRICS)} (got {metric!r})")
        experiment = Experiment(name, parsed, parse_split(split, parsed), metric=metric)
        library = TemplateLibrary.from_settings(settings)
    except ContentmillError as exc:
        fail(str(exc))
    started = _with_store(lambda s: s.start(experiment, library))
    if json_out:
        emit_json({"name": started.name, "state": started.state, "metric": started.metric,
                   "arms": {a.name: a.spec for a in started.arms}, "split": dict(started.split)})
        return
    shares = ", ".join(f"{a.name}={a.spec} ({started.split[a.name]:g}%)" for a in started.arms)
    console.print(f"experiment {name} started on {started.metric}: {shares}", highlight=False)


@experiment_app.command("status")
def show_status(name: Annotated[str, typer.Argument()], json_out: JsonOption = False) -> None:
    """Each arm's calls, tokens, cost and quality, Welch's t-test between the two best, and which arm wins."""
    result = _with_store(lambda s: status(s, name))
    if json_out:
        emit_json(result.as_dict())
        return
    print_status(result)


@experiment_app.command("stop")
def stop(
    name: Annotated[str, typer.Argument()],
    promote: Annotated[bool, typer.Option("--promote", help="Pin the significant winner's template version.")]
    = False,
    winner: Annotated[str | None, typer.Option(help="Promote this arm even without a significant result.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Stop the experiment; with --promote its winner's version becomes the one its template name answers."""

    def act(store: ExperimentStore) -> tuple[Experiment, Status]:
        result = status(store, name)
        chosen = winner
        if promote and chosen is None:
            if not result.significant or result.leader is None:
                fail(f"cannot promote: {result.verdict}; stop without --promote, collect more calls, or name "
                     "the arm with --winner")
            chosen = result.leader
        notes: dict[str, Any] = {"verdict": result.verdict, "welch": result.test.as_dict() if result.test else None}
        return store.stop(name, winner=chosen, notes=notes), result

    stopped, result = _with_store(act)
    if json_out:
        emit_json({**result.as_dict(), "state": stopped.state, "winner": stopped.winner,
                   "stopped_at": stopped.stopped_at.isoformat() if stopped.stopped_at else None})
        return
    if stopped.winner:
        arm = stopped.arm(stopped.winner)
        console.print(f"experiment {name} promoted arm {arm.name}: {arm.template} now answers with version "
                      f"{arm.version}", highlight=False)
    else:
        console.print(f"experiment {name} stopped; {result.verdict}", highlight=False)


@experiment_app.command("run")
def run(
    name: Annotated[str, typer.Argument()],
    requests: Annotated[Path, typer.Argument(help="JSONL: one object of template variables per line, or "
                                                  "{\"variables\": {...}, \"reference\": ..., \"facts\": [...]}.")],
    model: Annotated[str | None, typer.Option(help="provider:model for arms that name none.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Send at most this many requests.")] = None,
    judge: Annotated[str | None, typer.Option(help="provider:model of an LLM judge for quality.")] = None,
    score: Annotated[bool, typer.Option(help="Grade each answer (reference, facts, or whether it finished).")]
    = False,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Send requests through a running experiment (each to its arm by hash), then show its status."""
    settings = settings_or_fail()
    tags = parse_tags(tag)
    try:
        trials = read_requests(requests)[:limit]
    except (OSError, ValueError) as exc:
        fail(f"{requests}: {exc}")

    async def go() -> Status:
        async with Gateway(settings) as gateway:
            store = ExperimentStore(gateway.store)
            experiment = store.get(name)
            if experiment.state != "running":
                fail(f"experiment {name} is {experiment.state}; start a new one")
            scorer = pick_scorer(gateway, judge=judge) if (score or judge) else None
            await run_trials(gateway, TemplateLibrary.from_settings(settings), experiment, trials, model=model,
                             scorer=scorer, tags=tags)
            return status(store, name)

    try:
        result = asyncio.run(go())
    except ContentmillError as exc:
        fail(str(exc))
    if json_out:
        emit_json(result.as_dict())
        return
    print_status(result)


def read_requests(path: Path) -> list[TrialRequest]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not all(isinstance(row, dict) for row in rows):
        raise ValueError("each line must be a JSON object")
    return [TrialRequest.from_dict(row) for row in rows]
