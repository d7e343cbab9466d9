"""``contentmill compare``: the same prompts on several models, side by side, with a cost-quality chart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from contentmill.commands import JsonOption, emit_json, fail, parse_tags, settings_or_fail, wide_console
from contentmill.errors import ContentmillError
from contentmill.experiments.chart import draw_chart
from contentmill.experiments.compare import DEFAULT_MAX_TOKENS, Comparison, compare_models, read_prompts
from contentmill.gateway import Gateway
from contentmill.quality.pick import pick_scorer
from contentmill.settings import Settings

console = wide_console()


def _text_or_file(value: str) -> str:
    path = Path(value)
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else value
    except OSError:
        return value


def default_chart(settings: Settings) -> Path:
    return settings.data_dir / "compare" / f"compare-{time.strftime('%Y%m%dT%H%M%S')}.png"


def compare(
    prompt_or_file: Annotated[str, typer.Argument(help="A prompt, or a file: .jsonl rows with 'prompt', or text "
                                                       "with prompts separated by lines of ---.")],
    models: Annotated[str, typer.Option(help="Comma-separated provider:model names.")],
    runs: Annotated[int, typer.Option(min=1, help="How many times each prompt runs on each model.")] = 1,
    max_tokens: Annotated[int, typer.Option(min=1, help="Output limit of each call.")] = DEFAULT_MAX_TOKENS,
    system: Annotated[str | None, typer.Option(help="A system instruction for every prompt.")] = None,
    reference: Annotated[str | None, typer.Option(help="A reference answer (text or file): quality is MiniLM "
                                                       "similarity to it.")] = None,
    judge: Annotated[str | None, typer.Option(help="provider:model of an LLM judge (its calls are paid).")] = None,
    fact: Annotated[list[str] | None, typer.Option(help="A fact the answer must state (repeatable).")] = None,
    chart: Annotated[Path | None, typer.Option(help="Where to write the PNG (default: in the data dir).")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Run the same prompts on each model through the gateway (cache off) and compare tokens, cost, latency
    p50/p99 and quality; the token difference is against the cheapest model."""
    settings = settings_or_fail()
    tags = parse_tags(tag)
    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        fail("--models needs at least one provider:model")
    try:
        prompts = read_prompts(prompt_or_file, max_tokens, system)
    except (ContentmillError, ValueError) as exc:
        fail(str(exc))

    async def go() -> Comparison:
        async with Gateway(settings) as gateway:
            scorer = pick_scorer(gateway, reference=_text_or_file(reference) if reference else None, judge=judge,
                                 facts=fact or [])
            chosen = bool(reference or judge or fact)  # a default "finished" grade says little to the router
            return await compare_models(gateway, prompts, names, runs=runs, scorer=scorer, tags=tags,
                                        record_quality=chosen)

    try:
        result = asyncio.run(go())
        path = draw_chart(result, chart or default_chart(settings))
    except ContentmillError as exc:
        fail(str(exc))
    except (ValueError, OSError) as exc:
        fail(f"compare failed: {exc}")
    if json_out:
        emit_json({**result.as_dict(), "chart": str(path)})
        return
    table = Table(title=f"{len(prompts)} prompts x {runs} runs a model; quality: {result.scorer}; tokens: against "
                        f"the cheapest, {result.baseline}", box=box.SIMPLE_HEAD, pad_edge=False)
    rows = result.table()
    for column in rows[0]:
        table.add_column(column, justify="left" if column == "model" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)
    for line in result.failures():
        console.print(line, highlight=False)
    console.print(f"chart: {path}")
