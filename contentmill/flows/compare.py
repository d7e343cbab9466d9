"""The compare flow: the same prompts on several models through the gateway, as a table artifact and a chart of
cost against quality (a PNG in the object store, linked as an artifact)."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow
from prefect.artifacts import acreate_link_artifact, acreate_markdown_artifact, acreate_table_artifact
from prefect.runtime import flow_run
from pydantic import Field

from contentmill.experiments.compare import DEFAULT_MAX_TOKENS
from contentmill.requests import TextRequest
from contentmill.tasks.tuning import chart_task, compare_task
from contentmill.video.summary import link

ARTIFACT_KEY = "compare"
Prompts = Annotated[list[str], Field(min_length=1, description="The prompts every model answers.")]
Models = Annotated[list[str], Field(min_length=1, description="provider:model names to compare.")]


@flow(name="compare", persist_result=False, log_prints=False)
async def compare(
    prompts: Prompts,
    models: Models,
    runs: Annotated[int, Field(ge=1, le=100)] = 1,
    max_tokens: Annotated[int, Field(ge=1, le=32_768)] = DEFAULT_MAX_TOKENS,
    system: str | None = None,
    reference: str | None = None,
    judge_model: str | None = None,
    facts: list[str] | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Tokens in/out, cost, latency p50/p99 and quality of each model on the same prompts (cache off).

    Args:
        prompts: The prompts every model answers.
        models: provider:model names to compare.
        runs: How many times each prompt runs on each model.
        max_tokens: Output limit of each call.
        system: A system instruction for every prompt.
        reference: A reference answer: quality is MiniLM sentence similarity to it.
        judge_model: provider:model of an LLM judge (its calls are paid like any other).
        facts: Facts each answer must state.
        tags: Cost tags such as {"team": "..."}.
    """
    requests = [TextRequest.chat(p, system=system, max_tokens=max_tokens) for p in prompts]
    result = await compare_task(requests, models, runs, reference, judge_model, facts or [], tags or {})
    chart = await chart_task(result, f"compare/{flow_run.id or 'local'}.png")
    await acreate_table_artifact(result.table(), key=ARTIFACT_KEY + "-models",
                                 description=f"Each model on {len(prompts)} prompts x {runs} runs; token "
                                             f"difference against the cheapest, {result.baseline}.")
    await acreate_link_artifact(link(chart), link_text="cost against quality (PNG)", key=ARTIFACT_KEY + "-chart")
    cheapest = next((m for m in result.models if m.model == result.baseline), None)
    lines = [f"# Compare: {len(models)} models", "",
             f"Quality scorer: {result.scorer}. Baseline (cheapest): {result.baseline}"
             + (f", {cheapest.cost_usd:.6f} USD." if cheapest else "."), "", f"Chart: {chart}"]
    await acreate_markdown_artifact("\n".join(lines), key=ARTIFACT_KEY + "-summary")
    return {**result.as_dict(), "chart": chart}
