"""The creator video flow's Prefect artifacts link to this server's /media/ route when CONTENTMILL_PUBLIC_URL is set,
and the link opens: a key of the video's team gets the video, another team's a 404."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from server_helpers import make_key, server_env

from contentmill.flows.creator_video import creator_video
from contentmill.testing.harness import Served, Upstream

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


async def test_the_flows_artifacts_link_through_the_server(
        serve: Callable[..., Served], upstream_server: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    data = Path(os.environ["CONTENTMILL_DATA_DIR"])
    env = server_env(upstream_server.base_url, data)
    server = serve(env)
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("CONTENTMILL_PUBLIC_URL", server.root_url + "/")

    result = await creator_video(topic="octopuses", tags={"team": "video"}, seconds=10, resolution=480, fps=10,
                                 text_model="openai:gpt-4o-mini", speech_model="openai:tts-1")
    assert result.flow_run_id is not None
    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(result.flow_run_id)])))
    artifacts = {artifact.key: artifact for artifact in found}
    video_url = f"{server.root_url}/media/{result.folder}video.mp4"
    assert str(artifacts["creator-video"].data) == f"[{result.title} ({result.duration_s:.1f} s)]({video_url})"
    summary = str(artifacts["creator-video-summary"].data)
    assert f"({server.root_url}/media/{result.folder}subtitles.srt)" in summary and "file://" not in summary

    team = make_key(env, team="video").secret
    other = make_key(env, team="rivals").secret
    with httpx.Client(timeout=10) as http:
        opened = http.get(video_url, headers={"authorization": f"Bearer {team}", "range": "bytes=0-63"})
        assert opened.status_code == 206 and opened.content[4:8] == b"ftyp"
        refused = http.get(video_url, headers={"authorization": f"Bearer {other}", "accept": "application/json"})
        assert refused.status_code == 404
