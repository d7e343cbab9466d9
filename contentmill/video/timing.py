"""The subtitles step: an SRT timed from the narration's measured durations, split into readable cues.

Cue splitting (sentences, then clauses, then words or CJK characters) is ``contentmill.media.subtitles``;
the render burns in cues built by the same function from the same scenes, so file and picture agree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from contentmill.media.subtitles import build_srt
from contentmill.storage import ObjectStore
from contentmill.video.narration import NarrationResult
from contentmill.video.progress import StepEvent, announce
from contentmill.video.records import StepReport, digest

SUBTITLES_VERSION = 1


@dataclass(frozen=True, slots=True)
class Timed:
    """A scene as subtitles see it."""

    narration: str
    duration_s: float


class SubtitlesResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    digest: str
    cues: int
    report: StepReport


def subtitles_step(narration: NarrationResult, store: ObjectStore) -> SubtitlesResult:
    """The SRT for the narration, stored at the address of its texts and durations."""
    started = time.perf_counter()
    announce(StepEvent("subtitles", "start", "timing subtitles from the audio"))
    scenes = [Timed(clip.narration, clip.duration_s) for clip in narration.clips]
    found = digest("subtitles", SUBTITLES_VERSION, [[scene.narration, scene.duration_s] for scene in scenes])
    key = f"steps/subtitles/{found}.srt"
    cached = store.exists(key)
    srt = build_srt(scenes)
    if not cached:
        store.put(key, srt.encode("utf-8"), "application/x-subrip")
    report = StepReport(step="subtitles", cached=cached, seconds=round(time.perf_counter() - started, 4))
    result = SubtitlesResult(key=key, digest=found, cues=srt.count(" --> "), report=report)
    announce(StepEvent("subtitles", "done", f"{result.cues} cues", report))
    return result
