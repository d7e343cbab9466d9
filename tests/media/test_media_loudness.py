"""The rendered narration is at the platforms' loudness (-14 LUFS) whatever the engine's own level, measured by
ffmpeg's EBU R128 meter on the finished MP4."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from contentmill.audio import tone
from contentmill.media.loudness import TARGET_LUFS, loudness_chain, measure
from contentmill.media.render import Scene, render_video
from contentmill.media.slides import write_slide

pytestmark = pytest.mark.slow
Speak = Callable[[str, str, Path], Awaitable[Path]]
LINES = ["Octopuses have three hearts and blue blood.", "Each of their eight arms can taste what it touches."]


async def test_narration_is_rendered_at_minus_fourteen_lufs(tmp_path: Path, speak: Speak) -> None:
    clips = [await speak(line, "en", tmp_path / f"clip{n}.wav") for n, line in enumerate(LINES)]
    assert measure(clips) < TARGET_LUFS - 4  # espeak-ng speaks at about -21 LUFS
    slide = write_slide(tmp_path / "slide.png", "Octopuses", size=(320, 568))
    scenes = [Scene.from_files(slide, clip, line) for clip, line in zip(clips, LINES, strict=True)]
    rendered = render_video(scenes, tmp_path / "video.mp4", size=(320, 568), fps=10)
    assert abs(measure([rendered.path]) - TARGET_LUFS) <= 0.6  # the AAC stream of the finished video


def test_silence_gets_no_gain(tmp_path: Path) -> None:
    silent = tmp_path / "silent.wav"
    silent.write_bytes(tone(1.0, volume=0.0))
    assert loudness_chain([silent]) == ""
