"""The one object-store layer (what flows publish, and the cache's L3 bytes): a local directory, and S3 (moto over
HTTP); its errors as one line that says what to fix, against a bucket that does not exist, a server that checks
credentials and an endpoint where nothing listens."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from contentmill.errors import ConfigError, ObjectStoreError
from contentmill.settings import load_settings
from contentmill.storage import LocalStore, ObjectStore, S3Store, check_key, open_store

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> Iterator[tuple[Any, str]]:
    client = boto3.session.Session().client("s3", endpoint_url=s3_endpoint, **CREDENTIALS)
    name = f"cm-video-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    try:
        yield client, name
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=item["Key"])
        client.delete_bucket(Bucket=name)
        client.close()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
        return
    client, bucket = request.getfixturevalue("s3_bucket")
    opened = S3Store(bucket, client=client, prefix="contentmill/store/")
    yield opened
    opened.close()


def _read(url: str) -> bytes:
    if url.startswith("http"):
        return httpx.get(url, timeout=10, trust_env=False).raise_for_status().content
    return Path(url).read_bytes()


def test_put_get_exists_and_url(store: ObjectStore) -> None:
    assert store.get("steps/script/abc.json") is None
    assert not store.exists("steps/script/abc.json")
    store.put("steps/script/abc.json", b'{"a": 1}', "application/json")
    assert store.exists("steps/script/abc.json")
    assert store.get("steps/script/abc.json") == b'{"a": 1}'
    assert _read(store.url("steps/script/abc.json")) == b'{"a": 1}'
    store.put_json("x/value.json", {"title": "熊猫", "n": 3})
    assert store.get_json("x/value.json") == {"title": "熊猫", "n": 3}


def test_files_go_in_and_out_and_copies_stay_inside(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "video.mp4"
    source.write_bytes(b"\x00video" * 1000)
    store.put_file("steps/render/d.mp4", source, "video/mp4")
    store.copy("steps/render/d.mp4", "videos/x-1/video.mp4")
    assert _read(store.url("videos/x-1/video.mp4")) == source.read_bytes()
    saved = store.save_as("videos/x-1/video.mp4", tmp_path / "out" / "video.mp4")
    assert saved.read_bytes() == source.read_bytes()
    fetched = store.fetch("steps/render/d.mp4", tmp_path / "scratch")
    assert fetched.read_bytes() == source.read_bytes()
    store.put("videos/x-1/video.mp4", b"replaced")  # a copy is independent of its source
    assert store.get("steps/render/d.mp4") == source.read_bytes()


def test_a_local_copy_is_a_hard_link_and_writes_leave_no_partial_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("steps/a.bin", b"data")
    store.copy("steps/a.bin", "videos/a.bin")
    assert store.path("steps/a.bin").stat().st_ino == store.path("videos/a.bin").stat().st_ino
    assert sorted(p.name for p in (tmp_path / "store").rglob("*") if p.is_file()) == ["a.bin", "a.bin"]


@pytest.mark.parametrize("key", ["../outside", "/etc/passwd", "a//b", "a/./b", "", "a b", "a/../b"])
def test_keys_are_plain_relative_paths(key: str) -> None:
    with pytest.raises(ValueError, match="relative path"):
        check_key(key)


def test_objects_are_listed_and_deleted_by_prefix(store: ObjectStore) -> None:
    for key in ("steps/a/1.json", "steps/a/2.json", "steps/ab.json", "steps/b/3.json", "videos/x-1/video.mp4"):
        store.put(key, key.encode())
    assert sorted(store.keys("steps/a")) == ["steps/a/1.json", "steps/a/2.json", "steps/ab.json"]
    assert sorted(store.keys("steps/a/")) == ["steps/a/1.json", "steps/a/2.json"]
    assert len(list(store.keys())) == 5 and list(store.keys("nothing/")) == []
    assert store.delete("steps/b/3.json")
    assert not store.exists("steps/b/3.json") and store.get("steps/b/3.json") is None
    assert store.clear("steps/") == 3
    assert list(store.keys()) == ["videos/x-1/video.mp4"]
    assert store.clear() == 1 and list(store.keys()) == []


def test_a_local_clear_takes_partial_files_and_empty_folders_too(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("steps/a/1.json", b"1")
    (tmp_path / "store" / "steps" / "a" / ".partial-crashed.json").write_bytes(b"half")
    assert list(store.keys()) == ["steps/a/1.json"]  # a partial file is no object
    assert not store.delete("steps/a/2.json")  # the local store can tell that nothing was there
    assert store.clear("steps/") == 1
    assert [p.name for p in (tmp_path / "store").rglob("*")] == []


def test_only_partial_files_a_crash_left_long_ago_are_swept(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("entries/a/1.bin", b"1")
    folder = tmp_path / "store" / "entries" / "a"
    old, fresh = folder / ".partial-old.bin", folder / ".partial-fresh.bin"
    for partial in (old, fresh):
        partial.write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert store.remove_partials("entries/", older_than_s=3600) == 1
    assert sorted(p.name for p in folder.iterdir()) == [".partial-fresh.bin", "1.bin"]


def test_a_missing_object_is_none_or_file_not_found(store: ObjectStore, tmp_path: Path) -> None:
    assert store.get("steps/none.bin") is None and not store.exists("steps/none.bin")
    for ask in (lambda: store.fetch("steps/none.bin", tmp_path), lambda: store.copy("steps/none.bin", "b.bin"),
                lambda: store.save_as("steps/none.bin", tmp_path / "out.bin")):
        with pytest.raises(FileNotFoundError, match="no object 'steps/none.bin' in "):
            ask()
    assert not (tmp_path / "out.bin").exists() and not store.exists("b.bin")


def _one_line(exc: pytest.ExceptionInfo[ObjectStoreError]) -> str:
    message = str(exc.value)
    assert "\n" not in message and exc.value.__cause__ is None and exc.value.__suppress_context__
    return message


def test_a_missing_bucket_says_to_create_it_or_set_the_bucket(s3_endpoint: str) -> None:
    client = boto3.session.Session().client("s3", endpoint_url=s3_endpoint, **CREDENTIALS)
    store = S3Store("no-such-bucket-here", client=client)
    try:
        for action in (lambda: store.put("a.txt", b"x"), lambda: store.get("a.txt"), lambda: store.delete("a.txt"),
                       lambda: list(store.keys("a")), lambda: store.clear(), store.check):
            with pytest.raises(ConfigError) as failed:
                action()
            message = _one_line(failed)
            assert message.startswith(f"bucket no-such-bucket-here does not exist at {s3_endpoint}")
            assert message.endswith("create it, or set CONTENTMILL_S3_BUCKET to one that does")
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def checking_s3() -> Iterator[str]:
    """A moto S3 server of this module's own that checks credentials from its first request on."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):
            assert process.poll() is None and time.monotonic() < deadline, "moto's server did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


def test_refused_credentials_say_which_to_check(checking_s3: str) -> None:
    client = boto3.session.Session().client("s3", endpoint_url=checking_s3, **CREDENTIALS)
    store = S3Store("media", client=client)
    try:
        with pytest.raises(ObjectStoreError) as failed:
            store.put("a.txt", b"x")
        assert _one_line(failed) == (
            f"bucket media at {checking_s3} refuses these credentials (InvalidAccessKeyId) (writing "
            f"s3://media/contentmill/store/a.txt): check the AWS credentials (AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
        )
        with pytest.raises(ObjectStoreError, match=r"^bucket media at .* refuses these credentials \(403\)"):
            store.check()
    finally:
        client.close()


def test_an_endpoint_where_nothing_listens_says_to_start_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    nowhere = f"http://127.0.0.1:{_free_port()}"
    store = S3Store("media", endpoint_url=nowhere, region_name="us-east-1", timeout_s=1.0)
    try:
        with pytest.raises(ObjectStoreError) as failed:
            store.get("a.txt")
        message = _one_line(failed)
        assert message.startswith(f"cannot reach the object store at {nowhere} (")
        assert message.endswith("(reading s3://media/contentmill/store/a.txt): start it or fix "
                                "CONTENTMILL_S3_ENDPOINT_URL")
    finally:
        store.close()


def test_the_settings_choose_the_store(tmp_path: Path, s3_endpoint: str) -> None:
    local = open_store(load_settings(data_dir=tmp_path))
    assert isinstance(local, LocalStore) and local.root == (tmp_path / "store").resolve()
    s3 = open_store(load_settings(data_dir=tmp_path, s3_bucket="media", s3_endpoint_url=s3_endpoint))
    try:
        assert isinstance(s3, S3Store)
        assert s3.location == "s3://media/contentmill/store/"
    finally:
        s3.close()
