"""The render step: a slide per scene, the narration under it, subtitles burned in, one H.264/AAC MP4.

The video's address covers what the picture and sound depend on: the script's text, each narration clip,
each scene's picture, the subtitles and their style (plain or karaoke), frame size, frame rate, the font file and
the music file (path, size and modification time), so a new voice, font or track renders again while an unchanged
request reuses the stored video. Slides drift slowly and dissolve into each other (``MOTION``).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from pydantic import BaseModel, ConfigDict, ValidationError

from contentmill.media import PALETTES, Font, Scene, find_font, render_video, write_slide
from contentmill.storage import ObjectStore
from contentmill.video.illustrate import keyword
from contentmill.video.narration import NarrationResult
from contentmill.video.progress import StepEvent, announce
from contentmill.video.records import StepReport, digest
from contentmill.video.request import VideoRequest
from contentmill.video.timing import SubtitlesResult
from contentmill.video.visuals import VisualsResult
from contentmill.video.writing import ScriptResult

RENDER_VERSION = 2  # 2: narration at -14 LUFS
MOTION = True  # each scene's keyword rising into place, slow pans, dissolves between scenes (media/render.py)


class RenderResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    digest: str
    duration_s: float  # as probed from the written file
    narration_s: float
    width: int
    height: int
    fps: int
    report: StepReport


def choose_font(script: ScriptResult, request: VideoRequest, font_file: Path | None) -> Font:
    """A font that draws every title, caption and subtitle (the configured one, or an EngineError)."""
    text = " ".join(
        [script.script.title, *(f"{s.narration} {s.on_screen_text}" for s in script.script.scenes)]
    )
    return find_font(text, font_file=font_file, language=request.language)


def font_identity(font: Font) -> list[object]:
    stat = font.path.stat()
    return [str(font.path.resolve()), font.index, stat.st_size, stat.st_mtime_ns]


def file_identity(path: Path) -> list[object]:
    """A file as a render depends on it: where it is, its size and when it last changed."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def render_digest(
    request: VideoRequest,
    script: ScriptResult,
    narration: NarrationResult,
    subtitles: SubtitlesResult,
    font: Font,
    visuals: VisualsResult | None = None,
) -> str:
    inputs = {
        "script": script.digest,
        "clips": [clip.digest for clip in narration.clips],
        "visuals": [visual.digest for visual in visuals.visuals] if visuals else [],
        "subtitles": subtitles.digest,
        "size": list(request.size),
        "fps": request.fps,
        "font": font_identity(font),
        "motion": [MOTION, "keywords"],
    }
    inputs.update(request.finish)  # karaoke, music: only where set
    if request.captions == "karaoke" and any(clip.words for clip in narration.clips):
        inputs["karaoke_timing"] = "voice"  # words light up when the voice says them
    if request.music:
        inputs["music"] = file_identity(Path(request.music))
    return digest("render", RENDER_VERSION, inputs)


def _slides(script: ScriptResult, size: tuple[int, int], font: Font, folder: Path,
            pictures: Sequence[tuple[Path, str] | None]) -> list[Path]:
    """The first slide carries the title over its caption; the others show their caption; each over its
    scene's picture when it has one, or as an overlay for its footage."""
    paths = []
    for number, (scene, picture) in enumerate(zip(script.script.scenes, pictures, strict=True)):
        title, text = (
            (script.script.title, scene.on_screen_text) if number == 0 else (scene.on_screen_text, "")
        )
        path = folder / f"slide-{number + 1:02d}.png"
        footage = picture is not None and picture[1] == "footage"
        with contextlib.ExitStack() as stack:
            image = stack.enter_context(Image.open(picture[0])) if picture is not None and not footage else None
            paths.append(write_slide(path, title, text, size=size, font=font,
                                     palette=PALETTES[number % len(PALETTES)], picture=image, overlay=footage))
    return paths


def _pictures(visuals: VisualsResult | None, scenes: int, store: ObjectStore, folder: Path
              ) -> list[tuple[Path, str] | None]:
    """Each scene's picture or footage fetched from the store with its kind, or None for every scene."""
    if visuals is None or not visuals.visuals:
        return [None] * scenes
    return [(store.fetch(visual.key, folder / "pictures"), visual.kind) for visual in visuals.visuals]


def _stored(store: ObjectStore, key: str, found: str) -> RenderResult | None:
    record = store.get_json(f"steps/render/{found}.json")
    if not isinstance(record, dict) or not store.exists(key):
        return None
    try:
        return RenderResult.model_validate({**record, "key": key, "digest": found})
    except ValidationError:
        return None


def _render(
    request: VideoRequest,
    script: ScriptResult,
    narration: NarrationResult,
    font: Font,
    store: ObjectStore,
    key: str,
    found: str,
    started: float,
    visuals: VisualsResult | None = None,
) -> RenderResult:
    with tempfile.TemporaryDirectory(prefix="contentmill-render-") as scratch:
        folder = Path(scratch)
        pictures = _pictures(visuals, len(script.script.scenes), store, folder)
        slides = _slides(script, request.size, font, folder, pictures)
        scenes = [
            Scene.from_files(slide, store.fetch(clip.key, folder / "audio"), clip.narration,
                             picture[0] if picture is not None and picture[1] == "footage" else None,
                             keyword(scene.narration, scene.on_screen_text, request.topic) if MOTION else "",
                             clip.words)
            for slide, clip, picture, scene in zip(slides, narration.clips, pictures, script.script.scenes,
                                                   strict=True)
        ]
        rendered = render_video(scenes, folder / "video.mp4", size=request.size, fps=request.fps, font=font,
                                motion=MOTION, karaoke=request.captions == "karaoke",
                                music=Path(request.music) if request.music else None)
        store.put_file(key, rendered.path, "video/mp4")
    report = StepReport(step="render", model="ffmpeg", seconds=round(time.perf_counter() - started, 4))
    width, height = request.size
    result = RenderResult(
        key=key,
        digest=found,
        duration_s=rendered.info.duration_s or rendered.narration_s,
        narration_s=rendered.narration_s,
        width=width,
        height=height,
        fps=request.fps,
        report=report,
    )
    store.put_json(f"steps/render/{found}.json", result.model_dump(mode="json", exclude={"key", "digest"}))
    return result


def render_step(
    request: VideoRequest,
    script: ScriptResult,
    narration: NarrationResult,
    subtitles: SubtitlesResult,
    store: ObjectStore,
    font_file: Path | None = None,
    visuals: VisualsResult | None = None,
) -> RenderResult:
    """The stored video for these inputs (``visuals``: each scene's picture), or a new render stored there."""
    started = time.perf_counter()
    announce(
        StepEvent("render", "start", f"rendering {request.size[0]}x{request.size[1]} at {request.fps} fps")
    )
    font = choose_font(script, request, font_file)
    found = render_digest(request, script, narration, subtitles, font, visuals)
    key = f"steps/render/{found}.mp4"
    stored = _stored(store, key, found)
    if stored is not None:
        result = stored.model_copy(update={"report": stored.report.reused(time.perf_counter() - started)})
    else:
        result = _render(request, script, narration, font, store, key, found, started, visuals)
    announce(StepEvent("render", "done", f"{result.duration_s:.1f} s of video", result.report))
    return result
