"""Studio runs over plain HTTP against ``contentmill serve``, the fake OpenAI-compatible upstream as the text and
speech models: the form's checks, a run from topic to published video with each step's cost, the team's list of
videos, a scene edit that speaks only that scene again, and the models a key may choose."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from server_helpers import UPSTREAM_KEY, calls, ledger, make_key, server_env

from contentmill.ledger.schema import studio_runs
from contentmill.server.web.studio_runs import STALE_S
from contentmill.testing.harness import Served, Upstream

JSON = {"accept": "application/json"}
FORM = {"topic": "octopuses", "language": "en", "seconds": "10", "voice": "alloy", "orientation": "landscape",
        "resolution": "480", "text_model": "openai:gpt-4o-mini", "speech_model": "openai:tts-1"}


def _auth(key: str) -> dict[str, str]:
    return {**JSON, "authorization": f"Bearer {key}"}


def _finished(client: httpx.Client, key: str, run_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/studio/runs/{run_id}", headers=_auth(key)).json()
        if run["state"] in ("done", "failed", "interrupted"):
            return run
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not finish in {timeout_s} s")


def _steps(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["step"]: step for step in run["steps"]}


def _slow_speech_run(serve: Callable[..., Served], upstream: Callable[..., Upstream], tmp_path: Path,
                     ready: Callable[[dict[str, Any]], bool]) -> tuple[dict[str, str], Served, str, dict[str, Any],
                                                                      Upstream]:
    """A server whose speech model takes 2.5 s a call, and a run started on it as it is once ``ready(run)``:
    the environment, the server, the key, the run, the upstream."""
    slow_speech = upstream("--model-profile", "tts-1=2500:1", api_key=[UPSTREAM_KEY], rpm=100_000, tpm=100_000_000)
    env = server_env(slow_speech.base_url, tmp_path / "data")
    server = serve(env)
    key = make_key(env, team="shop").secret
    with httpx.Client(base_url=server.root_url, timeout=30) as client:
        run = client.post("/studio/runs", headers=_auth(key), json=FORM).json()
        deadline = time.monotonic() + 60
        while not ready(run) and time.monotonic() < deadline:
            time.sleep(0.2)
            run = client.get(f"/studio/runs/{run['id']}", headers=_auth(key)).json()
    return env, server, key, run, slow_speech


def test_the_form_says_what_to_fix_in_one_line(client: httpx.Client, env: dict[str, str]) -> None:
    key = make_key(env, team="shop").secret
    empty = client.post("/studio/runs", headers=_auth(key), json={**FORM, "topic": "  "})
    assert empty.status_code == 400 and empty.json()["error"]["message"] == "a topic must not be blank"
    short = client.post("/studio/runs", headers=_auth(key), json={**FORM, "seconds": "3"})
    assert short.status_code == 400 and "the length in seconds is at least 10" in short.json()["error"]["message"]
    unknown = client.post("/studio/runs", headers=_auth(key), json={**FORM, "budget": "1"})
    assert unknown.status_code == 400 and "unknown field 'budget'" in unknown.json()["error"]["message"]
    captions = client.post("/studio/runs", headers=_auth(key), json={**FORM, "captions": "bouncy"})
    assert captions.status_code == 400
    assert captions.json()["error"]["message"] == "captions is 'plain' or 'karaoke' (got 'bouncy')"
    not_json = client.post("/studio/runs", headers=_auth(key), content=b"topic=x")
    assert not_json.status_code == 400


def test_a_key_chooses_only_among_its_models_and_a_read_key_cannot_start(
        client: httpx.Client, env: dict[str, str]) -> None:
    narrow = make_key(env, team="shop", models=["local:gemma-3-270m", "local:espeak-ng"]).secret
    page = client.get("/studio", headers={"authorization": f"Bearer {narrow}"})
    assert page.status_code == 200 and 'data-testid="topic-input"' in page.text
    assert "local:gemma-3-270m" in page.text and "openai:gpt-4o-mini" not in page.text
    refused = client.post("/studio/runs", headers=_auth(narrow), json=FORM)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"
    remote = make_key(env, team="shop", models=["openai:gpt-4o-mini"]).secret  # no speech model, not the defaults
    assert client.get("/studio", headers={"authorization": f"Bearer {remote}"}).status_code == 200
    empty = client.post("/studio/runs", headers=_auth(remote), json={**FORM, "text_model": "", "speech_model": ""})
    assert empty.status_code == 403  # an empty choice is the server's default, which this key may not use either
    assert "'local:gemma-3-270m' as the text model" in empty.json()["error"]["message"]
    read = make_key(env, team="shop", role="read").secret
    assert client.post("/studio/runs", headers=_auth(read), json=FORM).status_code == 403
    assert client.get("/studio", headers={"authorization": f"Bearer {read}"}).status_code == 403


def test_a_voice_sample_is_spoken_by_the_chosen_model(client: httpx.Client, env: dict[str, str]) -> None:
    key = make_key(env, team="shop").secret
    sample = client.get("/studio/voice", params={"model": "openai:tts-1", "voice": "nova", "language": "en"},
                        headers=_auth(key))
    assert sample.status_code == 200 and sample.headers["content-type"] == "audio/wav" and sample.content
    assert client.get("/studio/voice", params={"model": "openai:gpt-4o-mini"}, headers=_auth(key)).status_code == 403


def test_the_keys_own_budget_holds_every_call_of_its_studio_runs_and_a_teammate_keeps_to_its_models(
        client: httpx.Client, env: dict[str, str]) -> None:
    key = make_key(env, team="shop", budget_usd=0.00001).secret  # less than a script's reservation
    started = client.post("/studio/runs", headers=_auth(key), json=FORM)
    assert started.status_code == 201
    run = _finished(client, key, started.json()["id"])
    assert run["state"] == "failed" and "budget" in run["error"].lower(), run["error"]
    assert _steps(run)["script"]["state"] == "failed"
    assert run["cost_usd"] == 0
    teammate = make_key(env, team="shop", models=["local:gemma-3-270m", "local:espeak-ng"]).secret
    again = client.post(f"/studio/runs/{run['id']}/again", headers=_auth(teammate), json={})
    assert again.status_code == 403 and "'openai:gpt-4o-mini'" in again.json()["error"]["message"]


@pytest.mark.slow
def test_a_run_publishes_a_video_with_each_steps_cost_and_a_scene_edit_speaks_one_scene(
        client: httpx.Client, env: dict[str, str]) -> None:
    key = make_key(env, team="shop").secret
    started = client.post("/studio/runs", headers=_auth(key), json=FORM)
    assert started.status_code == 201, started.text
    run = _finished(client, key, started.json()["id"])
    assert run["state"] == "done", run["error"]
    steps = _steps(run)
    assert all(step["state"] == "done" for step in steps.values())
    assert steps["script"]["model"] == "openai:gpt-4o-mini" and steps["script"]["cost_usd"] > 0
    assert steps["narration"]["model"] == "openai:tts-1" and steps["narration"]["cost_usd"] > 0
    assert run["cost_usd"] == pytest.approx(sum(step.get("cost_usd", 0.0) for step in steps.values()))
    rows = calls(env, at_least=2)
    assert run["cost_usd"] == pytest.approx(sum(row.cost_usd for row in rows))  # what the ledger billed
    assert {row.tags["team"] for row in rows} == {"shop"} and {row.tags["job"] for row in rows} == {"creator-video"}

    video = client.get(run["media"]["video"], headers={**_auth(key), "range": "bytes=0-1023"})
    assert video.status_code == 206 and video.content[4:8] == b"ftyp"
    script = client.get(run["media"]["script"], headers=_auth(key)).json()
    listed = client.get("/studio/runs", headers=_auth(key)).json()["data"]
    assert [item["id"] for item in listed] == [run["id"]] and listed[0]["cost_usd"] == run["cost_usd"]
    other = make_key(env, team="rivals").secret
    assert client.get(f"/studio/runs/{run['id']}", headers=_auth(other)).status_code == 404
    assert client.get(run["media"]["video"], headers=_auth(other)).status_code == 404

    edited = client.post(f"/studio/runs/{run['id']}/edit", headers=_auth(key),
                         json={"scene_edits": {"1": "Octopuses have three hearts and blue blood."}})
    assert edited.status_code == 201, edited.text
    again = _finished(client, key, edited.json()["id"])
    assert again["state"] == "done", again["error"]
    again_steps = _steps(again)
    assert again_steps["script"]["cost_usd"] == 0 and again_steps["script"]["cached"]
    assert again_steps["narration"]["calls"] == 1  # only the edited scene is spoken again
    assert again["media"]["video"] != run["media"]["video"]
    new_script = client.get(again["media"]["script"], headers=_auth(key)).json()
    assert new_script["scenes"][0]["narration"] == "Octopuses have three hearts and blue blood."
    assert new_script["scenes"][1:] == script["scenes"][1:]


@pytest.mark.slow
def test_a_run_cut_short_by_a_crash_reads_interrupted_and_starts_again_paying_only_for_what_was_not_stored(
        serve: Callable[..., Served], upstream: Callable[..., Upstream], tmp_path: Path) -> None:
    def scripted(run: dict[str, Any]) -> bool:
        return bool(_steps(run)["script"]["state"] == "done")

    env, first, key, run, slow_speech = _slow_speech_run(serve, upstream, tmp_path, scripted)
    run_id = run["id"]
    assert scripted(run) and _steps(run)["narration"]["state"] == "running"
    first.process.kill()  # a crash: nothing marks the run
    first.process.wait()
    scripts = slow_speech.stats()["by_model"]["gpt-4o-mini"]["requests"]
    store = ledger(env)
    try:
        with store.transaction("age the run") as conn:  # as if the heartbeat stopped a minute ago
            conn.execute(studio_runs.update().values(updated_at=datetime.now(UTC) - timedelta(seconds=STALE_S + 1)))
    finally:
        store.close()

    second = serve(env)
    with httpx.Client(base_url=second.root_url, timeout=30) as client:
        cut = client.get(f"/studio/runs/{run_id}", headers=_auth(key)).json()
        assert cut["state"] == "interrupted"
        again = client.post(f"/studio/runs/{run_id}/again", headers=_auth(key), json={})
        assert again.status_code == 201, again.text
        done = _finished(client, key, again.json()["id"])
    assert done["state"] == "done", done["error"]
    assert _steps(done)["script"]["cached"] and _steps(done)["script"]["cost_usd"] == 0
    assert slow_speech.stats()["by_model"]["gpt-4o-mini"]["requests"] == scripts  # the script was not paid again


def test_an_unreachable_prefect_deployment_is_a_503_that_says_what_to_check(
        serve: Callable[..., Served], upstream_server: Upstream, tmp_path: Path) -> None:
    env = {**server_env(upstream_server.base_url, tmp_path / "data", studio_deployment="creator-video/creator-video"),
           "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # nothing listens on the discard port
    server = serve(env)
    key = make_key(env, team="shop").secret
    with httpx.Client(base_url=server.root_url, timeout=60) as client:
        refused = client.post("/studio/runs", headers=_auth(key), json=FORM)
    assert refused.status_code == 503, refused.text
    message = refused.json()["error"]["message"]
    assert "creator-video/creator-video" in message and "PREFECT_API_URL" in message and "\n" not in message
    assert calls(env, at_least=0, settle_s=0) == []  # nothing was called, nothing paid


@pytest.mark.slow
def test_a_server_stopped_mid_run_marks_the_run_ended_at_once(
        serve: Callable[..., Served], upstream: Callable[..., Upstream], tmp_path: Path) -> None:
    env, server, _, run, _ = _slow_speech_run(serve, upstream, tmp_path, lambda run: run["state"] == "running")
    run_id = run["id"]
    server.stop()  # SIGTERM: a graceful stop
    store = ledger(env)
    try:
        (row,) = store.rows(sa.select(studio_runs).where(studio_runs.c.id == run_id), "read the run")
    finally:
        store.close()
    # Cancelled by the stopping event loop: interrupted. The server closes its gateway first, so a call in flight
    # at that moment may fail the run instead; either way the run is not left running and can be started again.
    assert row["state"] in ("interrupted", "failed") and row["error"]
