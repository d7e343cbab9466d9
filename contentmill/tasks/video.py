"""The creator video's steps as Prefect tasks: one task per step, all scenes of a step inside it.

A task opens its own gateway and store from the settings (nothing unpicklable crosses a task boundary) and
returns where its results are stored, never media bytes; media-producing tasks also keep their results out
of Prefect's memory. Prefect's task cache is off: each step's result is content-addressed in the object
store by the library, which is what makes reruns free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from contentmill.settings import Settings, load_settings
from contentmill.storage import ObjectStore, open_store
from contentmill.tasks import RETRY_OPTIONS
from contentmill.video.lineage import VideoLineage, record_lineage, resolve_similar
from contentmill.video.narration import NarrationResult, narration_step
from contentmill.video.pipeline import step_resources
from contentmill.video.publish import Published, publish_step
from contentmill.video.records import StepReport
from contentmill.video.render import RenderResult, render_step
from contentmill.video.request import VideoRequest
from contentmill.video.timing import SubtitlesResult, subtitles_step
from contentmill.video.visuals import VisualsResult, visuals_step
from contentmill.video.writing import ScriptResult, script_step

_COMMON = {"cache_policy": NO_CACHE, "persist_result": False, **RETRY_OPTIONS}
_MEDIA = {**_COMMON, "cache_result_in_memory": False}


@contextmanager
def _store(settings: Settings) -> Iterator[ObjectStore]:
    store = open_store(settings)
    try:
        yield store
    finally:
        store.close()


def _log(report: StepReport) -> None:
    reuse = "reused the stored result" if report.cached else f"{report.calls} calls"
    get_run_logger().info(
        "%s: %s, %s, %s USD (saved %s USD), %.2f s",
        report.step,
        report.model or "-",
        reuse,
        f"{report.cost_usd:.6f}",
        f"{report.saved_usd:.6f}",
        report.seconds,
    )


@task(name="similar", **_COMMON)
async def similar_task(request: VideoRequest) -> tuple[VideoRequest, dict[str, Any] | None]:
    """An earlier video whose topic means the same, under the same settings, serves this request."""
    resolved, note = await asyncio.to_thread(resolve_similar, load_settings(), request)
    if note is not None:
        get_run_logger().info("%r means the same as the earlier %r (similarity %.3f): its stored video is reused",
                              note["asked"], note["topic"], note["score"])
    return resolved, note


@task(name="script", **_COMMON)
async def script_task(request: VideoRequest) -> ScriptResult:
    """The text model writes the script (or the stored one is reused)."""
    async with step_resources(load_settings()) as (gateway, store):
        result = await script_step(request, gateway, store)
    _log(result.report)
    return result


@task(name="narration", **_MEDIA)
async def narration_task(request: VideoRequest, script: ScriptResult) -> NarrationResult:
    """Speech for every scene in one task; clips are stored, their keys returned."""
    async with step_resources(load_settings()) as (gateway, store):
        result = await narration_step(request, script, gateway, store)
    _log(result.report)
    return result


@task(name="visuals", **_MEDIA)
async def visuals_task(request: VideoRequest, script: ScriptResult) -> VisualsResult:
    """Every scene's picture in one task; pictures are stored, their keys returned."""
    async with step_resources(load_settings()) as (gateway, store):
        result = await visuals_step(request, script, gateway, store)
    _log(result.report)
    return result


@task(name="subtitles", **_MEDIA)
async def subtitles_task(narration: NarrationResult) -> SubtitlesResult:
    """The SRT timed from the measured narration."""
    with _store(load_settings()) as store:
        result = await asyncio.to_thread(subtitles_step, narration, store)
    _log(result.report)
    return result


@task(name="render", **_MEDIA)
async def render_task(
    request: VideoRequest, script: ScriptResult, narration: NarrationResult, subtitles: SubtitlesResult,
    visuals: VisualsResult | None = None,
) -> RenderResult:
    """Slides over each scene's picture, narration and burned-in subtitles into an MP4 (ffmpeg runs in a
    worker thread)."""
    settings = load_settings()
    with _store(settings) as store:
        result = await asyncio.to_thread(
            render_step, request, script, narration, subtitles, store, settings.font_file, visuals
        )
    _log(result.report)
    return result


@task(name="publish", **_MEDIA)
async def publish_task(
    request: VideoRequest,
    script: ScriptResult,
    narration: NarrationResult,
    subtitles: SubtitlesResult,
    render: RenderResult,
) -> Published:
    """The finished files, copied into the video's folder of the store."""
    with _store(load_settings()) as store:
        result = await asyncio.to_thread(publish_step, request, script, narration, subtitles, render, store)
    _log(result.report)
    return result


@task(name="lineage", **_COMMON)
async def lineage_task(
    request: VideoRequest,
    script: ScriptResult,
    narration: NarrationResult,
    render: RenderResult,
    published: Published,
) -> VideoLineage | None:
    """The video's outputs and their lineage into the knowledge graph (a new version supersedes the old)."""
    lineage = await asyncio.to_thread(record_lineage, load_settings(), request, script, narration, render, published)
    if lineage is not None:
        get_run_logger().info(
            "knowledge graph: %s, %d new outputs, %d superseded", lineage.entity, len(lineage.added),
            len(lineage.superseded),
        )
    return lineage
