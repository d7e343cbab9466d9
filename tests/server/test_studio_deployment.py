"""Studio runs through a Prefect deployment (CONTENTMILL_STUDIO_DEPLOYMENT): a served ``creator-video`` deployment
makes the video in its own process against a real Prefect API, and the studio follows it from the API and the
ledger (each step's cost), then serves the published video."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import calls, make_key, server_env

from contentmill.testing.harness import Served, Upstream

pytestmark = pytest.mark.slow
DEPLOYMENT = "creator-video/studio-test"
SERVE = ("from contentmill.flows.creator_video import creator_video; "
         "creator_video.serve(name='studio-test', print_starting_message=False)")


@pytest.fixture
def deployment(prefect_api: str, upstream_server: Upstream, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The deployment served by a process of its own; yields the environment a server needs to use it."""
    env = {**server_env(upstream_server.base_url, tmp_path / "data"), "PREFECT_API_URL": prefect_api,
           "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PREFECT_LOGGING_LEVEL": "WARNING"}
    log = (tmp_path / "served.log").open("wb")
    process = subprocess.Popen([sys.executable, "-c", SERVE], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        with httpx.Client(base_url=prefect_api, timeout=5) as api:
            while api.get(f"/deployments/name/{DEPLOYMENT}").status_code != 200:
                assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "served.log").read_text()
                time.sleep(0.5)
        yield {**env, "CONTENTMILL_STUDIO_DEPLOYMENT": DEPLOYMENT}
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_a_deployment_makes_the_video_and_the_studio_follows_it(
        serve: Callable[..., Served], deployment: dict[str, str]) -> None:
    server = serve(deployment)
    key = make_key(deployment, team="shop").secret
    auth = {"authorization": f"Bearer {key}", "accept": "application/json"}
    form = {"topic": "octopuses", "seconds": "10", "orientation": "landscape", "resolution": "480",
            "voice": "alloy", "text_model": "openai:gpt-4o-mini", "speech_model": "openai:tts-1"}
    with httpx.Client(base_url=server.root_url, timeout=30) as client:
        started = client.post("/studio/runs", headers=auth, json=form)
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        deadline = time.monotonic() + 240
        run = started.json()
        while run["state"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(1)
            run = client.get(f"/studio/runs/{run_id}", headers=auth).json()
        assert run["state"] == "done", run
        steps = {step["step"]: step for step in run["steps"]}
        assert steps["script"]["state"] == "done" and steps["script"]["cost_usd"] > 0
        assert steps["narration"]["cost_usd"] > 0 and steps["render"]["state"] == "done"
        rows = [row for row in calls(deployment, at_least=2) if row.tags.get("studio_run") == run_id]
        assert rows and run["cost_usd"] == pytest.approx(sum(row.cost_usd for row in rows))
        assert run["title"] and run["duration_s"] > 5 and len(run["media"]["audio"]) >= 1
        video = client.get(run["media"]["video"], headers={**auth, "range": "bytes=0-63"})
        assert video.status_code == 206 and video.content[4:8] == b"ftyp"
    assert os.environ.get("CONTENTMILL_STUDIO_DEPLOYMENT") is None  # the test process itself runs nothing
