"""The creator video as plain function calls: script -> narration -> visuals -> subtitles -> render -> publish.

The Prefect flow (``contentmill.flows.creator_video``) runs the same steps as tasks; this module is what the
steps share and the path for callers without Prefect (tests that inject models, benchmarks).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict

from contentmill.gateway import Gateway
from contentmill.settings import Settings, load_settings
from contentmill.storage import ObjectStore, open_store
from contentmill.video.lineage import VideoLineage, record_lineage, resolve_similar
from contentmill.video.narration import NarrationResult, narration_step
from contentmill.video.publish import Published, publish_step
from contentmill.video.records import StepReport
from contentmill.video.render import RenderResult, render_step
from contentmill.video.request import VideoRequest
from contentmill.video.timing import SubtitlesResult, subtitles_step
from contentmill.video.visuals import VisualsResult, visuals_step
from contentmill.video.writing import ScriptResult, script_step


class VideoResult(BaseModel):
    """What a run made and what it cost; ``as_json`` is the CLI's ``--json`` answer."""

    model_config = ConfigDict(frozen=True)

    title: str
    topic: str
    language: str
    video: str
    srt: str
    script: str
    audio: tuple[str, ...]
    folder: str
    store: str
    duration_s: float
    narration_s: float
    width: int
    height: int
    steps: dict[str, StepReport]
    cost_usd: float
    saved_usd: float
    flow_run_id: str | None = None
    entity: str | None = None  # the video in the knowledge graph (None when it could not be recorded)
    similar_to: dict[str, Any] | None = None  # asked topic, the earlier topic served instead, similarity, video id
    draft: bool = False  # the script was written by the small local model from the topic alone: check its facts
    thumbnail: str | None = None  # a JPEG of the first scene (None for a folder published before thumbnails)

    def as_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"steps"})
        data["steps"] = {
            name: report.model_dump(
                mode="json", include={"model", "calls", "usage", "cost_usd", "cached", "saved_usd", "seconds"}
            )
            for name, report in self.steps.items()
        }
        return data


def summarize(
    request: VideoRequest,
    script: ScriptResult,
    narration: NarrationResult,
    subtitles: SubtitlesResult,
    render: RenderResult,
    published: Published,
    flow_run_id: str | None = None,
    lineage: VideoLineage | None = None,
    similar_to: dict[str, Any] | None = None,
    visuals: VisualsResult | None = None,
) -> VideoResult:
    """The run's answer: where everything is, and each step's report with the totals."""
    reports = [script.report, narration.report, *([visuals.report] if visuals else []), subtitles.report,
               render.report, published.report]
    return VideoResult(
        title=script.script.title,
        topic=request.topic,
        language=request.language,
        video=published.video,
        srt=published.srt,
        thumbnail=published.thumbnail,
        script=published.script,
        audio=published.audio,
        folder=published.folder,
        store=published.location,
        duration_s=render.duration_s,
        narration_s=narration.duration_s,
        width=render.width,
        height=render.height,
        steps={report.step: report for report in reports},
        cost_usd=round(sum(report.cost_usd for report in reports), 10),
        saved_usd=round(sum(report.saved_usd for report in reports), 10),
        flow_run_id=flow_run_id,
        entity=lineage.entity if lineage else None,
        similar_to=similar_to,
        draft=script.script.draft,
    )


@asynccontextmanager
async def step_resources(
    settings: Settings, gateway: Gateway | None = None, store: ObjectStore | None = None
) -> AsyncIterator[tuple[Gateway, ObjectStore]]:
    """A gateway and a store, opened from the settings unless given; closes only what it opened."""
    opened_gateway = gateway if gateway is not None else Gateway(settings)
    opened_store = store if store is not None else open_store(settings)
    try:
        yield opened_gateway, opened_store
    finally:
        if gateway is None:
            await opened_gateway.aclose()
        if store is None:
            opened_store.close()


async def make_script(
    request: VideoRequest, *, settings: Settings | None = None, gateway: Gateway | None = None
) -> ScriptResult:
    """Only the script step (stored or written), without Prefect: what ``--script-only`` shows for review."""
    settings = settings or load_settings()
    async with step_resources(settings, gateway) as (gw, objects):
        return await script_step(request.with_models(settings), gw, objects)


async def make_video(
    request: VideoRequest,
    *,
    settings: Settings | None = None,
    gateway: Gateway | None = None,
    store: ObjectStore | None = None,
) -> VideoResult:
    """Run every step in this process; results already stored for the same inputs are reused."""
    settings = settings or load_settings()
    request, similar_to = await asyncio.to_thread(resolve_similar, settings, request.with_models(settings))
    async with step_resources(settings, gateway, store) as (gw, objects):
        script = await script_step(request, gw, objects)
        narration = await narration_step(request, script, gw, objects)
        visuals = await visuals_step(request, script, gw, objects)
        subtitles = await asyncio.to_thread(subtitles_step, narration, objects)
        render = await asyncio.to_thread(
            render_step, request, script, narration, subtitles, objects, settings.font_file, visuals
        )
        published = await asyncio.to_thread(
            publish_step, request, script, narration, subtitles, render, objects
        )
        lineage = await asyncio.to_thread(record_lineage, settings, request, script, narration, render, published)
        return summarize(request, script, narration, subtitles, render, published, lineage=lineage,
                         similar_to=similar_to, visuals=visuals)
