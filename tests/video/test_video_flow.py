"""The creator video flow against a real Prefect API, with the fake OpenAI-compatible upstream as provider:
artifacts, reruns that pay nothing, a voice change, a failed render that resumes, retries that stop."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import StateType, TaskRun
from prefect.states import Failed

from contentmill.errors import (
    AuthenticationError,
    BudgetExceeded,
    ConfigError,
    EngineError,
    MalformedResponse,
    ProviderUnavailable,
    RateLimited,
)
from contentmill.flows.creator_video import creator_video
from contentmill.knowledge_graph import KnowledgeGraph
from contentmill.settings import load_settings
from contentmill.tasks import retry_transient
from contentmill.testing.harness import Upstream
from contentmill.video import VideoRequest
from contentmill.video.lineage import current_outputs

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]
REPO = Path(__file__).resolve().parents[2]
SMALL: dict[str, Any] = {"seconds": 15, "resolution": 480, "fps": 10}
FINAL = (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)


def _requests(server: Upstream, model: str) -> int:
    counters: dict[str, int] = server.stats()["by_model"].get(model, {})
    return counters.get("requests", 0)


async def _artifacts(flow_run_id: str) -> dict[str, Any]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
        )
    return {artifact.key or str(artifact.type): artifact for artifact in found}


async def test_a_run_records_a_link_a_cost_table_a_summary_and_progress(openai_upstream: Upstream) -> None:
    result = await creator_video(topic="octopuses", tags={"team": "video", "project": "demo"}, **SMALL)
    assert result.flow_run_id is not None
    async with get_client() as client:
        run = await client.read_flow_run(UUID(result.flow_run_id))
    assert run.state is not None and run.state.is_completed()
    assert run.parameters["topic"] == "octopuses"

    artifacts = await _artifacts(result.flow_run_id)
    link = artifacts["creator-video"]
    assert link.type == "markdown" and Path(result.video).resolve().as_uri() in str(link.data)
    table = artifacts["creator-video-costs"]
    assert table.type == "table"
    for step in ("script", "narration", "subtitles", "render", "publish"):
        assert f'"{step}"' in str(table.data)
    assert "openai:gpt-4o-mini" in str(table.data) and "openai:tts-1" in str(table.data)
    summary = artifacts["creator-video-summary"]
    assert summary.type == "markdown" and "Cost of this run" in str(summary.data)
    assert artifacts["progress"].data == 100.0

    assert result.steps["script"].model == "openai:gpt-4o-mini" and result.steps["script"].cost_usd > 0
    assert result.steps["narration"].calls == _requests(openai_upstream, "tts-1")
    assert result.cost_usd == pytest.approx(sum(report.cost_usd for report in result.steps.values()))
    assert Path(result.video).is_file() and Path(result.srt).is_file() and Path(result.script).is_file()


async def test_a_rerun_pays_nothing_and_a_new_voice_redoes_only_narration_and_render(
    openai_upstream: Upstream,
) -> None:
    first = await creator_video(topic="octopuses", **SMALL)
    paid = openai_upstream.stats()["requests"]
    assert paid > 0 and first.cost_usd > 0

    again = await creator_video(topic="octopuses", **SMALL)
    assert openai_upstream.stats()["requests"] == paid  # not one model call
    assert all(report.cached for report in again.steps.values())
    assert again.cost_usd == 0 and again.saved_usd == pytest.approx(first.cost_usd)
    assert again.video == first.video

    chat, speech = _requests(openai_upstream, "gpt-4o-mini"), _requests(openai_upstream, "tts-1")
    voiced = await creator_video(topic="octopuses", voice="nova", **SMALL)
    assert _requests(openai_upstream, "gpt-4o-mini") == chat
    assert _requests(openai_upstream, "tts-1") == speech + first.steps["narration"].calls
    cached = {name: report.cached for name, report in voiced.steps.items()}
    # the fake upstream's speech lasts as long as its text whatever the voice, so the timing is unchanged
    assert cached == {
        "script": True,
        "narration": False,
        "visuals": True,
        "subtitles": True,
        "render": False,
        "publish": False,
    }
    assert voiced.video != first.video


async def test_an_edited_scene_is_spoken_again_and_rendered_and_the_graph_links_old_and_new(
    openai_upstream: Upstream,
) -> None:
    first = await creator_video(topic="octopuses", **SMALL)
    assert first.entity is not None
    chat, speech = _requests(openai_upstream, "gpt-4o-mini"), _requests(openai_upstream, "tts-1")
    line = "Octopuses taste whatever they touch with the suckers on their arms."

    edited = await creator_video(topic="octopuses", scene_edits={2: line}, **SMALL)
    assert _requests(openai_upstream, "gpt-4o-mini") == chat  # the script is not written again
    assert _requests(openai_upstream, "tts-1") == speech + 1  # one scene spoken again, the others reused
    assert edited.steps["narration"].calls == 1
    assert {name: report.cached for name, report in edited.steps.items()} == {
        "script": True, "narration": False, "visuals": False, "subtitles": False, "render": False, "publish": False,
    }  # visuals: the edited scene's illustration is drawn again, the others' are reused
    assert edited.video != first.video and edited.entity == first.entity

    with KnowledgeGraph.open(load_settings()) as graph:
        superseded = [(new, old) for new, old, kind in graph.graph.edges(keys=True) if kind == "supersedes"]
        kinds = sorted((graph.graph.nodes[old]["kind"], graph.graph.nodes[old].get("scene")) for _, old in superseded)
        assert kinds == [("audio", 2), ("text", 2), ("video", None)]
        current = current_outputs(graph, edited.entity)
        scene_texts = [graph.text(node) for node in current if graph.graph.nodes[node]["kind"] == "text"]
        assert line in scene_texts and len(scene_texts) == len(first.audio)
        hit = graph.search("suckers that taste what they touch", k=1, kind="text")[0]
        assert graph.text(hit.id) == line
        chain = [link.id for link in hit.chain]  # the current video's scenes, clips and render, sources first
        assert sorted(chain) == current and graph.graph.nodes[chain[-1]]["kind"] == "video"
        assert [link.kind for link in hit.chain].count("audio") == len(first.audio)

    again = await creator_video(topic="octopuses", scene_edits={2: line}, **SMALL)
    assert _requests(openai_upstream, "tts-1") == speech + 1 and again.cost_usd == 0
    with pytest.raises(ValueError, match="scene 9, but the script has scenes 1 to"):
        await creator_video(topic="octopuses", scene_edits={9: line}, **SMALL)


async def test_a_topic_that_means_the_same_is_served_from_the_earlier_video(openai_upstream: Upstream) -> None:
    first = await creator_video(topic="How do octopuses breathe?", **SMALL)
    paid = openai_upstream.stats()["requests"]

    again = await creator_video(topic="how octopuses breathe", **SMALL)
    assert openai_upstream.stats()["requests"] == paid and again.cost_usd == 0
    assert again.video == first.video and again.topic == "How do octopuses breathe?"
    assert again.similar_to is not None and again.similar_to["asked"] == "how octopuses breathe"
    assert again.similar_to["score"] >= load_settings().graph_reuse_threshold
    with KnowledgeGraph.open(load_settings()) as graph:
        decisions = graph.store.decisions()
    assert [d["reused"] for d in decisions].count(True) == 1  # the first run found nothing to reuse

    other = await creator_video(topic="how octopuses hunt", **SMALL)  # another question: made anew
    assert other.similar_to is None and _requests(openai_upstream, "gpt-4o-mini") > 0
    made = openai_upstream.stats()["requests"]
    assert made > paid
    longer = await creator_video(topic="how octopuses breathe", **{**SMALL, "seconds": 20})  # other settings
    asked = await creator_video(topic="how octopuses breathe", reuse_similar=False, **SMALL)
    assert longer.similar_to is None and asked.similar_to is None
    assert asked.topic == "how octopuses breathe" and asked.video != first.video


async def test_a_failed_render_fails_the_run_and_the_rerun_does_not_write_again(
    openai_upstream: Upstream, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = data_dir / "broken.ttf"
    broken.write_bytes(b"this is not a font")
    monkeypatch.setenv("CONTENTMILL_FONT_FILE", str(broken))
    state = await creator_video(topic="octopuses", **SMALL, return_state=True)
    assert state.is_failed()
    with pytest.raises(EngineError, match="CONTENTMILL_FONT_FILE"):
        await state.aresult()
    failed_run = str(state.state_details.flow_run_id)
    summary = (await _artifacts(failed_run))["creator-video-summary"]
    # the font draws the scenes' offline illustrations first, so the visuals step is where it fails
    assert "failed at the visuals step" in str(summary.data) and "script, narration" in str(summary.data)
    chat, speech = _requests(openai_upstream, "gpt-4o-mini"), _requests(openai_upstream, "tts-1")
    assert chat > 0 and speech > 0

    monkeypatch.delenv("CONTENTMILL_FONT_FILE")
    result = await creator_video(topic="octopuses", **SMALL)
    assert (_requests(openai_upstream, "gpt-4o-mini"), _requests(openai_upstream, "tts-1")) == (chat, speech)
    assert result.steps["script"].cached and result.steps["narration"].cached
    assert not result.steps["visuals"].cached and not result.steps["render"].cached and Path(result.video).is_file()


async def test_transient_provider_errors_are_retried_with_backoff(
    upstream: Callable[..., Upstream], openai_upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = upstream(error_rate=1.0)
    monkeypatch.setenv("OPENAI_BASE_URL", failing.base_url)
    with pytest.raises(ProviderUnavailable):
        await creator_video(topic="octopuses", **SMALL)
    # three task runs (two Prefect retries) of three attempts each (two gateway retries)
    assert failing.stats()["by_model"]["gpt-4o-mini"]["errors_5xx"] == 9


async def test_a_wrong_key_fails_at_once_without_task_retries(
    upstream: Callable[..., Upstream], openai_upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    guarded = upstream(api_key=["sk-the-right-one"])
    monkeypatch.setenv("OPENAI_BASE_URL", guarded.base_url)
    state = await creator_video(topic="octopuses", **SMALL, return_state=True)
    with pytest.raises(AuthenticationError, match="Incorrect API key"):
        await state.aresult()
    script_run = await _final_task_run(str(state.state_details.flow_run_id), "script")
    assert script_run.state_type == StateType.FAILED
    assert script_run.run_count == 1


async def _final_task_run(flow_run_id: str, name: str, wait_s: float = 30.0) -> TaskRun:
    """The task run once the API has recorded its final state (task-run states arrive as events)."""
    deadline = time.monotonic() + wait_s
    async with get_client() as client:
        while True:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
            )
            found = [run for run in runs if run.name.startswith(name) and run.state_type in FINAL]
            if found or time.monotonic() > deadline:
                assert found, f"the API recorded no final {name} task run in {wait_s:g} s"
                return found[0]
            await asyncio.sleep(0.2)


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ProviderUnavailable("503", model="m"), True),
        (MalformedResponse("cut off", model="m"), True),
        (RateLimited("no capacity now", retry_after=1.0), True),
        (ConnectionResetError("reset"), True),
        (AuthenticationError("bad key", model="m"), False),
        (BudgetExceeded("team:a", 1.0, 0.0, 1.0, 0.5), False),
        (ConfigError("set X"), False),
        (EngineError("ffmpeg failed"), False),
        (ValueError("bad input"), False),
    ],
)
def test_only_transient_errors_are_retried(error: Exception, retried: bool) -> None:
    assert retry_transient(None, None, Failed(data=error)) is retried


def test_flow_parameters_request_fields_and_deployment_defaults_agree() -> None:
    signature = inspect.signature(creator_video.fn)
    assert list(signature.parameters) == list(VideoRequest.model_fields)
    for name, field in VideoRequest.model_fields.items():
        default = signature.parameters[name].default
        expected = None if name in ("tags", "scene_edits") else (... if field.is_required() else field.default)
        assert (default is inspect.Parameter.empty and expected is ...) or default == expected, name

    config = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    (deployment,) = [d for d in config["deployments"] if d["name"] == "creator-video"]
    assert deployment["entrypoint"] == "contentmill/flows/creator_video.py:creator_video"
    assert deployment["work_pool"]["name"]
    parameters = deployment["parameters"]
    request = VideoRequest(**{"topic": "anything", **parameters})
    defaults = VideoRequest(topic="anything")
    assert request == defaults.model_copy(update={"topic": request.topic})
    assert set(parameters) == set(VideoRequest.model_fields) - {"topic"}
