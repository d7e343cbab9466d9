"""The reuse flow against a real Prefect API: past outputs found by meaning, with a table and a summary."""

from __future__ import annotations

from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from contentmill.flows.reuse import reuse
from contentmill.knowledge_graph import KnowledgeGraph, OutputSpec, RequestFacts
from contentmill.settings import load_settings

pytestmark = pytest.mark.usefixtures("prefect_api")


def _record_two_videos() -> str:
    with KnowledgeGraph.open(load_settings()) as graph:
        made = graph.record(
            RequestFacts("video", "Why octopuses have three hearts", template="creator_video@1"),
            [
                OutputSpec("text", "Octopuses have three hearts and blue blood.", cost_usd=0.002,
                           location="s3://media/octopus/script.json", entity="topic:octopus"),
                OutputSpec("audio", "Octopuses have three hearts and blue blood.", cost_usd=0.015,
                           derived_from=[0], location="s3://media/octopus/scene-01.wav", entity="topic:octopus"),
                OutputSpec("video", "Octopus hearts, a narrated short", derived_from=[1], cost_usd=0.03,
                           location="s3://media/octopus/video.mp4", entity="topic:octopus"),
            ],
        )
        graph.record(RequestFacts("text", "How bees make honey"),
                     [OutputSpec("text", "Bees turn nectar into honey by fanning it with their wings.")])
    return made.outputs[0]


async def test_the_reuse_flow_returns_past_outputs_with_chain_cost_and_location() -> None:
    script = _record_two_videos()
    run_ids: list[UUID] = []

    hits = await reuse.with_options(on_completion=[lambda _f, run, _s: run_ids.append(run.id)])(
        "the hearts and blood of an octopus", k=2, kind="text")
    assert [hit["id"] for hit in hits][0] == script and len(hits) == 2
    top = hits[0]
    assert top["entity"] == "topic:octopus" and top["cost_usd"] == pytest.approx(0.002)
    assert top["location"] == "s3://media/octopus/script.json"
    assert [link["kind"] for link in top["chain"]] == ["text", "audio", "video"]

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids)))
    found = {artifact.key: artifact for artifact in artifacts}
    assert "s3://media/octopus/script.json" in str(found["reuse"].data)
    assert "text -> audio -> video" in str(found["reuse"].data)
    assert "2 past outputs found" in str(found["reuse-summary"].data)


async def test_an_empty_graph_answers_with_no_hits_and_says_so() -> None:
    assert await reuse("anything at all") == []
