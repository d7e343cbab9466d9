"""The experiment flow: a batch of requests through a running A/B experiment (each to its arm by request hash),
then the experiment's status as a table artifact and its verdict as markdown."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from pydantic import Field

from contentmill.tasks.tuning import experiment_task

ARTIFACT_KEY = "experiment"
Requests = Annotated[
    list[dict[str, Any]],
    Field(min_length=1, description="Template variables per request, or {variables, reference, facts}."),
]


@flow(name="experiment", persist_result=False, log_prints=False)
async def experiment(
    name: Annotated[str, Field(min_length=1, max_length=100)],
    requests: Requests,
    n: Annotated[int | None, Field(ge=1)] = None,
    model: str | None = None,
    score: bool = False,
    judge_model: str | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Send the first ``n`` requests through experiment ``name`` and report each arm and the test.

    Args:
        name: A running experiment (contentmill experiment start).
        requests: Template variables per request, or {"variables": {...}, "reference": ..., "facts": [...]}.
        n: How many of the requests to send (default: all).
        model: provider:model for arms that name none (default: CONTENTMILL_TEXT_MODEL).
        score: Grade each answer (similarity to its reference, its facts, or whether it finished).
        judge_model: provider:model of an LLM judge for quality.
        tags: Cost tags such as {"team": "..."}.
    """
    result = await experiment_task(name, requests[:n], model, score, judge_model, tags or {})
    rows = [{k: ("-" if v is None else v) for k, v in arm.items()} for arm in result["arms"]]
    await acreate_table_artifact(rows, key=ARTIFACT_KEY + "-arms",
                                 description=f"Experiment {name}: each arm's calls, tokens, cost and quality.")
    welch = result["welch"]
    lines = [f"# Experiment {name} ({result['state']}, metric {result['metric']})", "", result["verdict"]]
    if welch:
        lines += ["", f"Welch's t-test {result['leader']} - {result['runner_up']}: difference {welch['diff']}, "
                      f"{welch['confidence']:.0%} CI [{welch['ci_low']}, {welch['ci_high']}], p = {welch['p']}"]
    await acreate_markdown_artifact("\n".join(lines), key=ARTIFACT_KEY + "-summary")
    return result
