"""The publish step: the finished video with its script, subtitles and narration, in one folder of the store.

``videos/<topic>-<id>/`` holds video.mp4, thumbnail.jpg (a frame of the first scene, its title over its picture),
subtitles.srt, script.json, audio/scene-NN.wav and manifest.json,
copied from the steps' stored results (hard links on a local disk, server-side copies on S3). The folder's id
is the render's address, so publishing the same video twice finds it in place; the manifest, written last,
marks the folder complete.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from contentmill.media.ffmpeg import frame_jpeg
from contentmill.media.text import has_cjk
from contentmill.storage import ObjectStore
from contentmill.video.narration import NarrationResult
from contentmill.video.progress import StepEvent, announce
from contentmill.video.records import StepReport
from contentmill.video.render import RenderResult
from contentmill.video.request import VideoRequest
from contentmill.video.timing import SubtitlesResult
from contentmill.video.writing import ScriptResult


class Published(BaseModel):
    """Where each published file is: file paths for a local store, presigned URLs for S3."""

    model_config = ConfigDict(frozen=True)

    location: str  # the store: a directory or s3://bucket/prefix/
    folder: str  # the key prefix, e.g. videos/octopuses-0123456789ab/
    video: str
    srt: str
    script: str
    audio: tuple[str, ...]
    manifest: str
    report: StepReport
    thumbnail: str | None = None  # None in a folder published before thumbnails were made


def slug(topic: str) -> str:
    """An ASCII name for the folder: Chinese in pinyin ("手冲咖啡": shou-chong-ka-fei), "video" when nothing is left."""
    if has_cjk(topic):
        from pypinyin import lazy_pinyin  # loads its dictionary: only for topics that need it

        topic = " ".join(lazy_pinyin(topic))
    ascii_text = unicodedata.normalize("NFKD", topic).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    return "-".join(words)[:40].strip("-") or "video"


def folder_for(request: VideoRequest, render: RenderResult) -> str:
    return f"videos/{slug(request.topic)}-{render.digest[:12]}/"


def _manifest(
    request: VideoRequest,
    script: ScriptResult,
    narration: NarrationResult,
    render: RenderResult,
    reports: list[StepReport],
) -> dict[str, Any]:
    return {
        "title": script.script.title,
        "request": request.model_dump(mode="json"),
        "files": {
            "video": "video.mp4",
            "subtitles": "subtitles.srt",
            "script": "script.json",
            "audio": [f"audio/scene-{n:02d}.wav" for n in range(1, len(narration.clips) + 1)],
            "thumbnail": "thumbnail.jpg",
        },
        "duration_s": render.duration_s,
        "narration_s": narration.duration_s,
        "size": [render.width, render.height],
        "fps": render.fps,
        "made_with": {report.step: report.model for report in reports if report.model},
        "cost_usd": round(sum(report.made_cost_usd for report in reports), 10),
    }


def _thumbnail(store: ObjectStore, video_key: str, key: str, at_s: float) -> None:
    """A JPEG of the video's frame at ``at_s``, stored under ``key``."""
    with tempfile.TemporaryDirectory(prefix="contentmill-thumbnail-") as scratch:
        folder = Path(scratch)
        video = store.fetch(video_key, folder)
        store.put_file(key, frame_jpeg(video, folder / "thumbnail.jpg", at_s), "image/jpeg")


def publish_step(
    request: VideoRequest,
    script: ScriptResult,
    narration: NarrationResult,
    subtitles: SubtitlesResult,
    render: RenderResult,
    store: ObjectStore,
) -> Published:
    """Copy the finished outputs into the video's folder (once) and say where each one is."""
    started = time.perf_counter()
    announce(StepEvent("publish", "start", f"publishing to {store.location}"))
    folder = folder_for(request, render)
    audio = [f"{folder}audio/scene-{n:02d}.wav" for n in range(1, len(narration.clips) + 1)]
    manifest_key = f"{folder}manifest.json"
    cached = store.exists(manifest_key)
    if not cached:
        script_json = json.dumps(script.script.model_dump(mode="json"), ensure_ascii=False, indent=2)
        store.put(f"{folder}script.json", script_json.encode("utf-8"), "application/json")
        store.copy(subtitles.key, f"{folder}subtitles.srt")
        for clip, target in zip(narration.clips, audio, strict=True):
            store.copy(clip.key, target)
        store.copy(render.key, f"{folder}video.mp4")
        _thumbnail(store, render.key, f"{folder}thumbnail.jpg", narration.clips[0].duration_s / 2)
        reports = [script.report, narration.report, subtitles.report, render.report]
        store.put_json(manifest_key, _manifest(request, script, narration, render, reports))
    report = StepReport(step="publish", cached=cached, seconds=round(time.perf_counter() - started, 4))
    published = Published(
        location=store.location,
        folder=folder,
        video=store.url(f"{folder}video.mp4"),
        srt=store.url(f"{folder}subtitles.srt"),
        script=store.url(f"{folder}script.json"),
        audio=tuple(store.url(key) for key in audio),
        manifest=store.url(manifest_key),
        report=report,
        thumbnail=store.url(f"{folder}thumbnail.jpg") if store.exists(f"{folder}thumbnail.jpg") else None,
    )
    announce(StepEvent("publish", "done", folder, report))
    return published
