"""``contentmill demo`` and ``contentmill video`` as a person runs them: a real process, a real Prefect API,
the embedded engines for the demo, and the files it leaves behind played back with ffmpeg."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import BytesIO
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest
from PIL import Image

from contentmill.media import Layout, audio_duration, parse_srt, probe
from contentmill.testing.harness import Upstream

pytestmark = pytest.mark.slow
CLI = Path(__file__).with_name("cli_app.py")


def _run(
    *args: str, cwd: Path, api: str, extra: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """The command in a fresh process with this test's environment and the session's Prefect API."""
    env = {**os.environ, "PREFECT_API_URL": api, "COLUMNS": "120", **(extra or {})}
    return subprocess.run(
        [sys.executable, str(CLI), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _frame(video: Path, seconds: float) -> Image.Image:
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-ss", f"{seconds:.3f}", "-i", str(video),
        "-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "-",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    with Image.open(BytesIO(done.stdout)) as image:
        return image.convert("RGB")


def _white_in_subtitle_band(frame: Image.Image) -> int:
    """Near-white pixels below the slide's text area, where only burned-in subtitles are drawn."""
    layout = Layout.for_size(frame.size)
    band = frame.crop((0, layout.bottom, layout.width, layout.height)).convert("L")
    return sum(band.histogram()[226:])


def test_demo_makes_a_playable_video_offline_and_prints_its_cost(
    embedded_data_dir: Path, prefect_api: str, tmp_path: Path
) -> None:
    done = _run("demo", "--json", cwd=tmp_path, api=prefect_api)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)  # exactly one JSON object on stdout
    assert result["steps"]["script"]["model"] == "local:gemma-3-270m"
    assert result["steps"]["narration"]["model"] == "local:espeak-ng"
    assert result["cost_usd"] == 0 and result["flow_run_id"]
    for key in ("video", "srt", "script", "duration_s", "steps"):
        assert key in result

    video = Path(result["video"])
    info = probe(video)
    (stream,) = info.of_kind("video")
    assert (stream.codec, stream.width, stream.height) == ("h264", 1080, 1920)
    assert [audio.codec for audio in info.of_kind("audio")] == ["aac"]
    narration_s = sum(audio_duration(path) for path in result["audio"])
    assert info.duration_s is not None and abs(info.duration_s - narration_s) <= 0.5

    cues = parse_srt(Path(result["srt"]).read_text(encoding="utf-8"))
    script = json.loads(Path(result["script"]).read_text(encoding="utf-8"))
    assert " ".join(" ".join(cue.lines) for cue in cues) == " ".join(s["narration"] for s in script["scenes"])
    middle = (cues[0].start_s + cues[0].end_s) / 2
    assert _white_in_subtitle_band(_frame(video, middle)) > 500  # the subtitles are in the picture

    again = _run("demo", cwd=tmp_path, api=prefect_api)
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""
    for step in ("script", "narration", "subtitles", "render", "publish"):
        assert step in again.stdout
    assert "total cost $0.000000" in again.stdout
    assert str(video) in again.stdout


def test_video_copies_its_files_out_and_a_failure_is_one_line(
    openai_upstream: Upstream, data_dir: Path, prefect_api: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["video", "how bees dance", "--seconds", "15", "--resolution", "480", "--out", str(out), "--json"]
    done = _run(*args, "--tag", "team=video", cwd=tmp_path, api=prefect_api)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["video"] == str(out / "video.mp4") and Path(result["video"]).is_file()
    assert result["srt"] == str(out / "subtitles.srt") and result["script"] == str(out / "script.json")
    assert sorted(p.name for p in (out / "audio").iterdir()) == [Path(a).name for a in result["audio"]]
    assert result["cost_usd"] > 0 and result["steps"]["script"]["model"] == "openai:gpt-4o-mini"

    broken = tmp_path / "broken.ttf"
    broken.write_bytes(b"not a font")
    args = ["video", "why the sky is blue", "--seconds", "15", "--resolution", "480", "--json"]
    failed = _run(*args, cwd=tmp_path, api=prefect_api, extra={"CONTENTMILL_FONT_FILE": str(broken)})
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.count("\n") == 1
    assert failed.stderr.startswith("contentmill: the render step failed:")
    assert "CONTENTMILL_FONT_FILE" in failed.stderr and "run the same command again" in failed.stderr

    invalid = _run("video", "x", "--lang", "fr", cwd=tmp_path, api=prefect_api)
    assert invalid.returncode == 2 and "'fr' is not one of" in invalid.stderr
