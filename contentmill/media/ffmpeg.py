"""Running the ffmpeg that imageio-ffmpeg ships, and reading a media file's streams from ``ffmpeg -i``.

imageio-ffmpeg ships no ffprobe, so :func:`probe` parses the stream summary ffmpeg prints for its input.
Every run has a timeout; a failure is an EngineError that says what ffmpeg was doing and its last words.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from contentmill.errors import EngineError

_REINSTALL = "pip install --force-reinstall imageio-ffmpeg"
_TAIL_LINES = 8
_DURATION = re.compile(r"^\s*Duration: (\d+):(\d{2}):(\d{2}(?:\.\d+)?)", re.MULTILINE)
_STREAM = re.compile(r"^\s*Stream #\d+:(\d+)(?:\[\w+\])?(?:\([^)]*\))?: (\w+): (.*)$", re.MULTILINE)
_SIZE = re.compile(r"^(\d+)x(\d+)(?:\s|$)")


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """The ffmpeg binary of imageio-ffmpeg (or the one IMAGEIO_FFMPEG_EXE names)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise EngineError("ffmpeg is not installed: pip install imageio-ffmpeg") from None
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError as exc:
        raise EngineError(
            f"imageio-ffmpeg has no ffmpeg binary ({exc}); reinstall it: {_REINSTALL}"
        ) from None


def _tail(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return "\n  ".join(lines[-_TAIL_LINES:]) or "(ffmpeg printed nothing)"


def run_ffmpeg(
    args: Sequence[str], *, purpose: str, timeout_s: float, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``ffmpeg args`` and wait at most ``timeout_s``; ``purpose`` ("rendering x.mp4") goes in errors."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:  # run() has killed ffmpeg and reaped it by now
        raise EngineError(f"ffmpeg did not finish {purpose} within {timeout_s:g} s and was stopped") from None
    except OSError as exc:
        raise EngineError(f"cannot start ffmpeg for {purpose} ({exc}); reinstall it: {_REINSTALL}") from None
    if check and done.returncode != 0:
        raise EngineError(f"ffmpeg failed {purpose} (exit status {done.returncode}):\n  {_tail(done.stderr)}")
    return done


def frame_jpeg(video: Path, out: Path, at_s: float, *, width: int = 720, timeout_s: float = 60.0) -> Path:
    """The frame of ``video`` at ``at_s`` seconds as a JPEG at most ``width`` pixels wide: a thumbnail."""
    args = ["-v", "error", "-y", "-ss", f"{max(0.0, at_s):.3f}", "-i", str(video), "-frames:v", "1",
            "-vf", f"scale='min({width},iw)':-2", "-q:v", "3", str(out)]
    run_ffmpeg(args, purpose=f"taking a thumbnail of {video.name}", timeout_s=timeout_s)
    return out


@dataclass(frozen=True, slots=True)
class Stream:
    """One stream as ffmpeg describes it; fields that do not apply to its kind are None."""

    index: int
    kind: str  # "video", "audio", "subtitle", "data", "attachment"
    codec: str
    width: int | None = None
    height: int | None = None
    pixel_format: str | None = None
    fps: float | None = None
    sample_rate: int | None = None
    channels: str | None = None


@dataclass(frozen=True, slots=True)
class MediaInfo:
    duration_s: float | None  # None when the container does not say (ffmpeg prints N/A)
    streams: tuple[Stream, ...]

    def of_kind(self, kind: str) -> list[Stream]:
        return [stream for stream in self.streams if stream.kind == kind]


def _fields(description: str) -> list[str]:
    """Split ffmpeg's stream description at commas outside parentheses and brackets."""
    fields: list[str] = []
    current: list[str] = []
    depth = 0
    for char in description:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth = max(0, depth - 1)
        if char == "," and depth == 0:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    fields.append("".join(current).strip())
    return [field for field in fields if field]


def _stream(index: int, kind: str, description: str) -> Stream:
    fields = _fields(description)
    codec = fields[0].split()[0] if fields else "unknown"
    if kind == "Video":
        size = next((match for field in fields[1:] if (match := _SIZE.match(field))), None)
        fps = next((float(field.split()[0]) for field in fields if field.endswith(" fps")), None)
        pixel_format = fields[1].split("(")[0] if len(fields) > 1 and not _SIZE.match(fields[1]) else None
        return Stream(
            index,
            "video",
            codec,
            width=int(size.group(1)) if size else None,
            height=int(size.group(2)) if size else None,
            pixel_format=pixel_format,
            fps=fps,
        )
    if kind == "Audio":
        rate = next((int(field.split()[0]) for field in fields if field.endswith(" Hz")), None)
        return Stream(
            index, "audio", codec, sample_rate=rate, channels=fields[2] if len(fields) > 2 else None
        )
    return Stream(index, kind.lower(), codec)


def parse_probe(stderr: str) -> MediaInfo:
    """The duration and streams of the first input in ``ffmpeg -i`` output."""
    input_part = stderr.split("Input #1", 1)[0].split("Output #0", 1)[0]
    duration = _DURATION.search(input_part)
    seconds = None
    if duration:
        hours, minutes, rest = duration.groups()
        seconds = int(hours) * 3600 + int(minutes) * 60 + float(rest)
    streams = tuple(
        _stream(int(match.group(1)), match.group(2), match.group(3)) for match in _STREAM.finditer(input_part)
    )
    return MediaInfo(seconds, streams)


def probe(path: str | Path, *, timeout_s: float = 60.0) -> MediaInfo:
    """Streams (codec, size, rates) and duration of a media file; EngineError if ffmpeg cannot read it."""
    target = Path(path)
    if not target.is_file():
        raise EngineError(f"cannot probe {target}: no such file")
    done = run_ffmpeg(["-i", str(target)], purpose=f"reading {target.name}", timeout_s=timeout_s, check=False)
    if "Input #0" not in done.stderr:  # ffmpeg exits 1 even on success here: it was given no output
        raise EngineError(f"ffmpeg cannot read {target} as media:\n  {_tail(done.stderr)}")
    return parse_probe(done.stderr)
