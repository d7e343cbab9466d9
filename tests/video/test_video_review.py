"""Review before paying: with ``review=True`` the creator-video flow pauses after the script, nothing is spoken,
and the run resumes through the Prefect API with the script as the reviewer edited it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.flow_runs import aresume_flow_run

from contentmill.flows.creator_video import creator_video
from contentmill.testing.harness import Upstream

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]
SMALL: dict[str, Any] = {"seconds": 15, "resolution": 480, "fps": 10}


# The same topic every time: the script writer keeps only sentences close in meaning to the topic, and a random
# suffix in it (once used to tell runs apart) left too few of them now and then. Runs are told apart by when they
# started instead.
TOPIC = "octopuses"


async def _paused(topic: str, since: datetime, timeout_s: float = 120) -> FlowRun:
    """The paused flow run of ``topic`` created after ``since``, once it has paused."""
    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
    async with get_client() as client:
        for _ in range(int(timeout_s * 2)):
            for run in await client.read_flow_runs(flow_run_filter=paused):
                if run.parameters.get("topic") == topic and run.created is not None and run.created >= since:
                    return run
            await asyncio.sleep(0.5)
    raise AssertionError(f"no paused run of {topic!r} after {timeout_s} s")


async def test_a_paused_run_resumes_with_the_edited_script_from_the_prefect_api(openai_upstream: Upstream) -> None:
    since = datetime.now(UTC)
    running = asyncio.create_task(creator_video(topic=TOPIC, review=True, **SMALL))
    run = await _paused(TOPIC, since)
    assert "tts-1" not in openai_upstream.stats()["by_model"]  # nothing spoken while the script waits
    edited = ["Octopuses have three hearts and blue blood.", "Each arm can taste what it touches."]
    await aresume_flow_run(run.id, run_input={"title": "Eight arms", "scenes": edited, "approved": True})
    result = await asyncio.wait_for(running, timeout=240)

    assert result.title == "Eight arms" and result.flow_run_id == str(run.id)
    assert len(result.audio) == 2
    assert openai_upstream.stats()["by_model"]["tts-1"]["requests"] == 2  # only the approved scenes are spoken
    assert result.steps["script"].cost_usd > 0  # what writing the first script cost still shows
    srt = Path(result.srt).read_text(encoding="utf-8")
    assert "Each arm can taste" in srt and "blue blood" in srt


async def test_a_script_not_approved_stops_the_run_before_anything_is_spoken(openai_upstream: Upstream) -> None:
    since = datetime.now(UTC)
    running = asyncio.create_task(creator_video(topic=TOPIC, review=True, **SMALL))
    run = await _paused(TOPIC, since)
    await aresume_flow_run(run.id, run_input={"title": "x", "scenes": ["Some scene."], "approved": False})
    with pytest.raises(Exception, match="not approved in review"):
        await asyncio.wait_for(running, timeout=120)
    assert "tts-1" not in openai_upstream.stats()["by_model"]
