"""Fixtures of the media tests: a Latin-only font, real narration WAVs, frames read back from videos."""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import imageio_ffmpeg
import pytest
from PIL import Image

from contentmill.providers.base import SpeechRequest
from contentmill.providers.espeak import EspeakSpeechModel

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

Speak = Callable[[str, str, Path], Awaitable[Path]]
FrameAt = Callable[[Path, float], Image.Image]


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
def frame_at() -> FrameAt:
    """The decoded video frame shown at ``seconds``, as an RGB image."""

    def grab(video: Path, seconds: float) -> Image.Image:
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-ss", f"{seconds:.3f}",
            "-i", str(video), "-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "-",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        with Image.open(io.BytesIO(done.stdout)) as image:
            return image.convert("RGB")

    return grab


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
