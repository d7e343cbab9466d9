"""Fixtures of the media tests: a Latin-only font, real narration WAVs, frames read back from videos."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import imageio_ffmpeg
import pytest

from contentmill.providers.espeak import EspeakSpeechModel
from contentmill.requests import SpeechRequest

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

Speak = Callable[[str, str, Path], Awaitable[Path]]


@pytest.fixture
def latin_only_font() -> Path:
    """A real font without CJK glyphs (DejaVu Sans)."""
    if not DEJAVU.is_file():
        pytest.skip(f"needs a Latin-only font at {DEJAVU} (apt-get install fonts-dejavu-core)")
    return DEJAVU


@pytest.fixture
def speak() -> Speak:
    """Narrate a text with the embedded espeak-ng engine into a WAV file: real speech of a real length."""
    model = EspeakSpeechModel()

    async def narrate(text: str, language: str, path: Path) -> Path:
        result = await model.synthesize(SpeechRequest(text, language=language))
        path.write_bytes(result.audio)
        return path

    return narrate


@pytest.fixture
def video_frames() -> Callable[[Path], int]:
    """How many frames the first video stream of a file holds, counted by demuxing it."""

    def count(video: Path) -> int:
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-i", str(video), "-map", "0:v:0", "-c", "copy",
            "-f", "null", "-",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return int(re.findall(r"frame=\s*(\d+)", done.stderr)[-1])

    return count
