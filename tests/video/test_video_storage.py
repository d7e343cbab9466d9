"""The object store of published outputs and step results: a local directory, and S3 (moto over HTTP)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from contentmill.errors import ConfigError
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
    url = store.put("steps/script/abc.json", b'{"a": 1}', "application/json")
    assert store.exists("steps/script/abc.json")
    assert store.get("steps/script/abc.json") == b'{"a": 1}'
    assert url == store.url("steps/script/abc.json")
    assert _read(url) == b'{"a": 1}'
    store.put_json("x/value.json", {"title": "熊猫", "n": 3})
    assert store.get_json("x/value.json") == {"title": "熊猫", "n": 3}


def test_files_go_in_and_out_and_copies_stay_inside(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "video.mp4"
    source.write_bytes(b"\x00video" * 1000)
    store.put_file("steps/render/d.mp4", source, "video/mp4")
    published = store.copy("steps/render/d.mp4", "videos/x-1/video.mp4")
    assert _read(published) == source.read_bytes()
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


def test_a_missing_bucket_is_a_config_error_naming_the_setting(s3_endpoint: str) -> None:
    client = boto3.session.Session().client("s3", endpoint_url=s3_endpoint, **CREDENTIALS)
    store = S3Store("no-such-bucket-here", client=client)
    try:
        with pytest.raises(ConfigError, match="CONTENTMILL_S3_BUCKET"):
            store.put("a.txt", b"x")
    finally:
        client.close()


def test_the_settings_choose_the_store(tmp_path: Path, s3_endpoint: str) -> None:
    local = open_store(load_settings(data_dir=tmp_path))
    assert isinstance(local, LocalStore) and local.root == (tmp_path / "store").resolve()
    s3 = open_store(load_settings(data_dir=tmp_path, s3_bucket="media", s3_endpoint_url=s3_endpoint))
    try:
        assert isinstance(s3, S3Store)
        assert s3.location == "s3://media/contentmill/store/"
    finally:
        s3.close()
