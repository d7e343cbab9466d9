"""The compare and experiment flows against a real Prefect API and the fake upstream: results and artifacts."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest
from PIL import Image
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from tuning_helpers import cli_env

from contentmill.experiments import Experiment, ExperimentStore, parse_arms, parse_split
from contentmill.flows.compare import compare
from contentmill.flows.experiment import experiment
from contentmill.ledger.store import LedgerStore, settings_url
from contentmill.settings import Settings

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def flow_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Flows read their settings from the environment, as a worker does."""
    for name, value in cli_env(settings).items():
        if name.startswith(("CONTENTMILL_", "OPENAI_")):
            monkeypatch.setenv(name, value)
    return settings


async def artifacts(flow_run_id: UUID) -> dict[str, Any]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {artifact.key: artifact for artifact in found}


def table_rows(artifact: Any) -> list[dict[str, Any]]:
    data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    return list(data)


async def test_compare_flow_makes_a_table_and_a_chart(flow_env: Settings) -> None:
    models = ["openai:model-a", "openai:model-c"]
    state = await compare(prompts=["Describe a lamp.", "Name a river."], models=models, runs=2, return_state=True)
    result = await state.result()
    assert [m["model"] for m in result["models"]] == models
    assert all(m["calls"] == 4 and m["cost_usd"] > 0 for m in result["models"])
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    found = await artifacts(run_id)
    rows = table_rows(found["compare-models"])
    assert [r["model"] for r in rows] == models and {"tok in", "USD", "p99 ms", "quality", "tokens"} <= set(rows[0])
    png = flow_env.data_dir / "store" / "compare" / f"{run_id}.png"
    assert result["chart"] == str(png) and png.resolve().as_uri() in found["compare-chart"].data
    with Image.open(png) as image:
        assert image.format == "PNG"
    assert "Baseline (cheapest): openai:model-a" in found["compare-summary"].data


async def test_experiment_flow_runs_requests_and_reports_each_arm(flow_env: Settings) -> None:
    arms = parse_arms("a=ab_line@1,b=ab_line@2")
    with LedgerStore(settings_url(flow_env)) as store:
        ExperimentStore(store).start(Experiment("flow-exp", arms, parse_split(None, arms)))
    requests = [{"product": f"Lamp {i}", "facts": f"walnut, {i} W"} for i in range(70)]
    state = await experiment(name="flow-exp", requests=requests, n=60, model="openai:gpt-4o-mini", score=True,
                             return_state=True)
    result = await state.result()
    assert sum(a["calls"] for a in result["arms"]) == 60
    assert all(a["quality_n"] == a["calls"] for a in result["arms"])
    assert result["significant"] is True and result["leader"] == "a"
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    found = await artifacts(run_id)
    assert [r["arm"] for r in table_rows(found["experiment-arms"])] == ["a", "b"]
    assert "Welch's t-test a - b" in found["experiment-summary"].data
