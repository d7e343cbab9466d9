"""The studio's media route over plain HTTP against ``contentmill serve``: range requests as a ``<video>`` element
makes them (206, Content-Range, ETag, If-Range, 304, 416), downloads, and who may see a video (its team's keys
and the admin; any other key gets the 404 of a file that does not exist); with S3, a redirect to a presigned URL."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import boto3
import httpx
import pytest
from server_helpers import ADMIN_KEY, make_key, server_env

from contentmill.testing.harness import Served, Upstream

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
FOLDER = "videos/octopuses-0123456789ab/"
VIDEO = FOLDER + "video.mp4"


@pytest.fixture
def published(env: dict[str, str]) -> bytes:
    """A published folder as the creator video flow leaves it, made for team ``shop`` (its manifest's tags)."""
    folder = Path(env["CONTENTMILL_DATA_DIR"]) / "store" / FOLDER
    (folder / "audio").mkdir(parents=True)
    data = os.urandom(100_000)
    (folder / "video.mp4").write_bytes(data)
    (folder / "subtitles.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nHello\n", encoding="utf-8")
    (folder / "audio" / "scene-01.wav").write_bytes(b"RIFF")
    (folder / "manifest.json").write_text(json.dumps({"request": {"topic": "octopuses", "tags": {"team": "shop"}}}))
    return data


def _auth(key: str, **headers: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", **headers}


def test_ranges_answer_206_with_content_range_and_the_exact_bytes(
        client: httpx.Client, env: dict[str, str], published: bytes) -> None:
    key = make_key(env, team="shop").secret
    whole = client.get(f"/media/{VIDEO}", headers=_auth(key))
    assert whole.status_code == 200 and whole.content == published
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    etag = whole.headers["etag"]

    part = client.get(f"/media/{VIDEO}", headers=_auth(key, range="bytes=100-199"))
    assert part.status_code == 206
    assert part.headers["content-range"] == "bytes 100-199/100000"
    assert part.headers["content-length"] == "100" and part.content == published[100:200]
    assert part.headers["etag"] == etag

    opened = client.get(f"/media/{VIDEO}", headers=_auth(key, range="bytes=99000-"))
    assert opened.status_code == 206 and opened.content == published[99000:]
    assert opened.headers["content-range"] == "bytes 99000-99999/100000"
    tail = client.get(f"/media/{VIDEO}", headers=_auth(key, range="bytes=-10"))
    assert tail.status_code == 206 and tail.content == published[-10:]
    past_end = client.get(f"/media/{VIDEO}", headers=_auth(key, range="bytes=0-999999"))
    assert past_end.status_code == 206 and past_end.headers["content-range"] == "bytes 0-99999/100000"

    assert client.get(f"/media/{VIDEO}", headers=_auth(key, **{"if-none-match": etag})).status_code == 304
    stale = client.get(f"/media/{VIDEO}", headers=_auth(key, range="bytes=0-9", **{"if-range": '"old"'}))
    assert stale.status_code == 200 and stale.content == published  # changed since: the whole file
    fresh = client.get(f"/media/{VIDEO}", headers=_auth(key, range="bytes=0-9", **{"if-range": etag}))
    assert fresh.status_code == 206 and fresh.content == published[:10]
    head = client.head(f"/media/{VIDEO}", headers=_auth(key))
    assert head.status_code == 200 and head.headers["content-length"] == "100000" and head.content == b""


def test_a_range_past_the_end_is_416_and_a_malformed_one_is_ignored(
        client: httpx.Client, env: dict[str, str], published: bytes) -> None:
    key = make_key(env, team="shop").secret
    bad = client.get(f"/media/{VIDEO}", headers=_auth(key, range="bytes=100000-"))
    assert bad.status_code == 416
    assert bad.headers["content-range"] == "bytes */100000" and bad.content == b""
    assert client.get(f"/media/{VIDEO}", headers=_auth(key, range="bytes=-0")).status_code == 416
    for ignored in ("bytes=abc", "items=0-10", "bytes=5-1", "bytes=0-1,5-9", "bytes=-", b"bytes=\xb2-3"):
        answer = client.get(f"/media/{VIDEO}", headers=_auth(key, range=ignored))
        assert answer.status_code == 200 and answer.content == published, ignored


def test_downloads_are_attachments_with_the_file_type(
        client: httpx.Client, env: dict[str, str], published: bytes) -> None:
    key = make_key(env, team="shop").secret
    srt = client.get(f"/media/{FOLDER}subtitles.srt?download=1", headers=_auth(key))
    assert srt.status_code == 200 and srt.headers["content-type"] == "application/x-subrip"
    assert srt.headers["content-disposition"] == 'attachment; filename="octopuses-0123456789ab-subtitles.srt"'
    audio = client.get(f"/media/{FOLDER}audio/scene-01.wav", headers=_auth(key))
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"


def test_another_teams_key_gets_the_404_of_a_missing_file(
        client: httpx.Client, env: dict[str, str], published: bytes) -> None:
    other = make_key(env, team="rivals").secret
    theirs = client.get(f"/media/{VIDEO}", headers=_auth(other, accept="application/json"))
    missing = client.get(f"/media/{FOLDER}nothing.mp4", headers=_auth(make_key(env, team="shop").secret,
                                                                      accept="application/json"))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"]["code"] == "not_found"
    assert client.get(f"/media/{VIDEO}", headers=_auth(ADMIN_KEY)).status_code == 200  # the admin sees every team's
    assert client.get(f"/media/{VIDEO}", headers={"accept": "application/json"}).status_code == 401
    assert client.get(f"/media/{VIDEO}", headers={"accept": "text/html"}).status_code == 303  # to the sign-in form


def test_only_published_files_are_served(client: httpx.Client, env: dict[str, str], published: bytes) -> None:
    key = make_key(env, team="shop").secret
    for path in ("/media/ledger.sqlite3", "/media/videos/../ledger.sqlite3", "/media/videos/video.mp4",
                 "/media/steps/x.json", "/media//etc/passwd"):
        answer = client.get(path, headers=_auth(key, accept="application/json"))
        assert answer.status_code == 404, path


def test_a_signed_in_browser_gets_the_video_through_its_session_cookie(
        client: httpx.Client, env: dict[str, str], published: bytes) -> None:
    key = make_key(env, team="shop").secret
    signed = client.post("/signin", data={"key": key, "next": "/studio"})
    assert signed.status_code == 303
    part = client.get(f"/media/{VIDEO}", headers={"range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == published[:100]


def test_an_s3_store_answers_a_redirect_to_a_presigned_url_that_lives_minutes(
        serve: Callable[..., Served], upstream_server: Upstream, tmp_path: Path, s3_endpoint: str) -> None:
    s3 = boto3.session.Session().client("s3", endpoint_url=s3_endpoint, **CREDENTIALS)
    bucket = f"cm-studio-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    data = os.urandom(50_000)
    s3.put_object(Bucket=bucket, Key=f"contentmill/store/{VIDEO}", Body=data, ContentType="video/mp4")
    s3.put_object(Bucket=bucket, Key=f"contentmill/store/{FOLDER}manifest.json",
                  Body=json.dumps({"request": {"tags": {"team": "shop"}}}).encode())
    env = {**server_env(upstream_server.base_url, tmp_path / "data", s3_bucket=bucket, s3_endpoint_url=s3_endpoint),
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        server = serve(env)
        key = make_key(env, team="shop").secret
        with httpx.Client(base_url=server.root_url, timeout=10, follow_redirects=False) as client:
            moved = client.get(f"/media/{VIDEO}", headers=_auth(key))
            assert moved.status_code == 302 and moved.headers["cache-control"] == "no-store"
            location = moved.headers["location"]
            assert location.startswith(s3_endpoint)
            signed = dict(parse_qsl(urlsplit(location).query))
            lives = (float(signed["X-Amz-Expires"]) if "X-Amz-Expires" in signed  # SigV4, else SigV2's deadline
                     else int(signed["Expires"]) - time.time())
            assert 250 < lives <= 300  # minutes, not the 7 days of the links the flow hands out
            part = httpx.get(location, headers={"range": "bytes=10-19"})
            assert part.status_code == 206 and part.content == data[10:20]
            download = client.get(f"/media/{VIDEO}?download=1", headers=_auth(key)).headers["location"]
            assert "response-content-disposition=attachment" in download
            other = client.get(f"/media/{VIDEO}", headers=_auth(make_key(env, team="rivals").secret,
                                                                 accept="application/json"))
            assert other.status_code == 404
    finally:
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=bucket)
        s3.close()
