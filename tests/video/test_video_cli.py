"""``contentmill demo`` and ``contentmill video`` as a person runs them: a real process, a real Prefect API,
the embedded engines for the demo, the files it leaves behind played back with ffmpeg, and a topic that means the
same as an earlier one answered from the store with no Prefect API to reach."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest
from PIL import Image

from contentmill.knowledge_graph import KnowledgeGraph
from contentmill.media import Layout, audio_duration, parse_srt, probe
from contentmill.settings import load_settings
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
    assert failed.stderr.startswith("contentmill: the visuals step failed:")  # the font draws the illustrations
    assert "CONTENTMILL_FONT_FILE" in failed.stderr and "run the same command again" in failed.stderr

    invalid = _run("video", "x", "--lang", "fr", cwd=tmp_path, api=prefect_api)
    assert invalid.returncode == 2 and "'fr' is not one of" in invalid.stderr


def test_a_topic_that_means_the_same_is_answered_from_the_store_before_any_prefect_api(
    openai_upstream: Upstream, data_dir: Path, prefect_api: str, tmp_path: Path
) -> None:
    small = ["--seconds", "15", "--resolution", "480"]
    made = _run("video", "How do octopuses breathe?", *small, "--json", cwd=tmp_path, api=prefect_api)
    assert made.returncode == 0, made.stderr
    first = json.loads(made.stdout)
    paid = openai_upstream.stats()["requests"]

    nowhere = "http://127.0.0.1:9/api"  # no Prefect API answers there: the store must
    similar = _run("video", "how octopuses breathe", *small, cwd=tmp_path, api=nowhere, extra={"COLUMNS": "400"})
    assert similar.returncode == 0, similar.stderr
    lines = [" ".join(line.split()) for line in similar.stdout.splitlines()]
    assert lines[0] == "✓ stored every step of this video is stored: nothing called, no flow run"
    assert "'how octopuses breathe' means the same as the earlier 'How do octopuses breathe?' (similarity" in (
        similar.stdout)
    assert f"video {first['video']}" in lines, lines
    assert any(line.startswith("total cost $0.000000") for line in lines), lines
    assert not any(line.startswith("flow run") for line in lines)

    again = _run("video", "how octopuses breathe", *small, "--json", cwd=tmp_path, api=nowhere)
    assert again.returncode == 0, again.stderr
    answer = json.loads(again.stdout)
    assert answer["video"] == first["video"] and answer["topic"] == "How do octopuses breathe?"
    assert answer["similar_to"]["asked"] == "how octopuses breathe" and answer["flow_run_id"] is None
    assert answer["cost_usd"] == 0 and all(step["cached"] for step in answer["steps"].values())
    assert openai_upstream.stats()["requests"] == paid
    with KnowledgeGraph.open(load_settings()) as graph:
        reused = [decision["reused"] for decision in graph.store.decisions()]
    assert sorted(reused) == [False, True]  # the first video found nothing; the similar topic's reuse is kept once


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid``, with their command lines."""
    found: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in {"Z", "X"}
    except (OSError, IndexError):
        return False


def test_a_terminated_command_stops_the_temporary_prefect_api_it_started(
    upstream: Callable[..., Upstream], data_dir: Path, tmp_path: Path
) -> None:
    slow = upstream(latency_ms=60_000)  # the run is still waiting for its script when it is stopped
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "OPENAI_BASE_URL": slow.base_url, "OPENAI_API_KEY": "sk-x",
            "CONTENTMILL_TEXT_MODEL": "openai:gpt-4o-mini", "CONTENTMILL_SPEECH_MODEL": "openai:tts-1"}
    command = [sys.executable, "-m", "contentmill.entry", "video", "how kites fly", "--seconds", "15"]  # the executable
    with subprocess.Popen(command, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) as cli:
        try:
            deadline, servers = time.monotonic() + 120, []
            while time.monotonic() < deadline and not servers:
                assert cli.poll() is None, cli.stderr.read() if cli.stderr else ""
                servers = [pid for pid, line in _children(cli.pid).items() if "uvicorn" in line]
                time.sleep(0.1)
            assert servers, "the command started a temporary Prefect API"
            time.sleep(3)  # the run is under way: its script is being written (60 s at this upstream)
            cli.send_signal(signal.SIGTERM)
            assert cli.wait(30) == 128 + signal.SIGTERM
            assert cli.stderr is not None
            said = cli.stderr.read().strip().splitlines()
            assert said[-1].startswith("contentmill: stopped by SIGTERM"), said
            assert not any("Traceback" in line for line in said), said
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and any(_running(pid) for pid in servers):
                time.sleep(0.1)
            assert not any(_running(pid) for pid in servers), "the temporary Prefect API outlived the command"
        finally:
            cli.kill()
