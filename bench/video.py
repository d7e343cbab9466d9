"""The creator video demo: wall time by step, and what Prefect orchestration adds to the same steps.

Baseline: the same steps called as plain functions (``contentmill.video.make_video``) in the same process,
on the same request (the demo's: embedded Gemma 3 270M and espeak-ng, 1080x1920 at 30 fps). Each run starts
from an empty data directory, so every step does its full work; runs alternate plain / flow so machine noise
hits both alike, after a warm-up that loads the engines and starts Prefect's temporary API (timed on its
own: it is paid once per process, not per run). A fully stored rerun is timed too: there the steps do
nothing and what is left is orchestration. Figures are medians; ``ratio`` = flow / plain. Last, one scene
of each flow-made video is edited: that run is timed against the fresh flow run of the same video.

    .venv/bin/python bench/video.py [--rounds 2]
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_WORK = Path(tempfile.mkdtemp(prefix="contentmill-bench-video-"))
# Prefect reads its settings when first imported: a private home, no telemetry, patience for a slow start.
os.environ["PREFECT_HOME"] = str(_WORK / "prefect")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from prefect import flow  # noqa: E402

from contentmill.commands.video import DEMO_MODELS, DEMO_SECONDS, DEMO_TOPIC  # noqa: E402
from contentmill.flows.creator_video import creator_video  # noqa: E402
from contentmill.providers.llama_local import model_path  # noqa: E402
from contentmill.settings import load_settings  # noqa: E402
from contentmill.video import VideoRequest, VideoResult, make_video  # noqa: E402

STEPS = ("script", "narration", "subtitles", "render", "publish")
FIELDS: dict[str, Any] = {
    "topic": DEMO_TOPIC,
    "seconds": DEMO_SECONDS,
    **DEMO_MODELS,
    "tags": {"job": "bench"},
}


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "video", **fields}), flush=True)


def fresh_data_dir(models: Path, name: str) -> Path:
    """An empty data directory that shares the assembled Gemma file."""
    folder = _WORK / name
    folder.mkdir()
    (folder / "models").symlink_to(models, target_is_directory=True)
    os.environ["CONTENTMILL_DATA_DIR"] = str(folder)
    return folder


def plain(data_dir: Path) -> VideoResult:
    return asyncio.run(make_video(VideoRequest(**FIELDS), settings=load_settings(data_dir=data_dir)))


def orchestrated(data_dir: Path) -> VideoResult:
    result: VideoResult = asyncio.run(creator_video(**FIELDS))  # reads CONTENTMILL_DATA_DIR
    return result


def timed(run: Callable[[Path], VideoResult], data_dir: Path) -> tuple[float, VideoResult]:
    started = time.perf_counter()
    result = run(data_dir)
    return time.perf_counter() - started, result


@flow(name="bench-empty", persist_result=False)
def empty() -> None:
    """Nothing: its first run starts the temporary API."""


def warm_up(models: Path) -> None:
    started = time.perf_counter()
    empty()
    emit(
        figure="api_start",
        seconds=round(time.perf_counter() - started, 2),
        note="Prefect's temporary API, started once per process by the first flow run",
    )
    plain(fresh_data_dir(models, "warm-up"))  # loads Gemma and espeak-ng, warms ffmpeg and the fonts


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    rounds = parser.parse_args().rounds
    models = model_path(_WORK / "gemma").parent
    warm_up(models)
    totals: dict[str, list[float]] = {"plain": [], "flow": []}
    steps: dict[str, dict[str, list[float]]] = {
        "plain": {s: [] for s in STEPS},
        "flow": {s: [] for s in STEPS},
    }
    reruns: dict[str, list[float]] = {"plain": [], "flow": []}
    edits: list[tuple[float, float, VideoResult]] = []
    for number in range(rounds):
        for kind, run in (("plain", plain), ("flow", orchestrated)):
            data_dir = fresh_data_dir(models, f"{kind}-{number}")
            seconds, result = timed(run, data_dir)
            assert not any(report.cached for report in result.steps.values()), "a fresh run reused results"
            totals[kind].append(seconds)
            for step in STEPS:
                steps[kind][step].append(result.steps[step].seconds)
            again, stored = timed(run, data_dir)
            assert all(report.cached for report in stored.steps.values()), "a rerun made something again"
            reruns[kind].append(again)
            if kind == "flow":
                edited, made = timed(edit_one_scene, data_dir)
                edits.append((edited, seconds, made))
    for step in STEPS:
        emit(
            figure="step_seconds",
            step=step,
            plain_s=median(steps["plain"][step]),
            flow_s=median(steps["flow"][step]),
        )
    plain_s, flow_s = median(totals["plain"]), median(totals["flow"])
    emit(
        figure="demo_total",
        plain_s=plain_s,
        flow_s=flow_s,
        ratio=round(flow_s / plain_s, 3),
        overhead_s=round(flow_s - plain_s, 3),
        runs=rounds,
    )
    plain_again, flow_again = median(reruns["plain"]), median(reruns["flow"])
    emit(
        figure="stored_rerun",
        plain_s=plain_again,
        flow_s=flow_again,
        ratio=round(flow_again / plain_again, 1),
        overhead_s=round(flow_again - plain_again, 3),
        runs=rounds,
    )
    scenes = len(edits[0][2].audio)
    emit(
        figure="scene_edit",
        edit_s=median([e for e, _, _ in edits]),
        full_s=median([f for _, f, _ in edits]),
        ratio=median([e / f for e, f, _ in edits]),
        spoken_again=edits[0][2].steps["narration"].calls,
        scenes=scenes,
        note="one scene's narration changed: the script and the other clips are reused, the video rendered again",
    )


def edit_one_scene(data_dir: Path) -> VideoResult:
    edit = {2: "Octopuses taste whatever they touch with the suckers on their arms."}
    result: VideoResult = asyncio.run(creator_video(**FIELDS, scene_edits=edit))
    assert result.steps["script"].cached and result.steps["narration"].calls == 1, "an edit made more than one clip"
    return result


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(_WORK, ignore_errors=True)
