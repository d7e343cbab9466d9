"""The L3 tier's names in the bucket and the directory stay what they were, so entries already stored are read:
``<prefix>entries/<namespace>/<scope>/<digest[:2]>/<digest>`` and ``<prefix>media/...`` the same way."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from cache_helpers import MakeBackend

from contentmill.cache import BYTES, JSON, Entry, ObjectStoreCache, TieredCache, build_key

KEY = build_key(model="openai:tts-1", tenant="team-a", input="Read this aloud.", namespace="speech")


def stored_name(kind: str, key: Any) -> str:
    return f"{kind}/speech/{key.scope}/{key.digest[:2]}/{key.digest}"


class Raw:
    """The bucket or the directory under the tier, read and written without the store layer."""

    def __init__(self, kind: str, bucket: tuple[Any, str], prefix: str, tmp_path: Path) -> None:
        self.kind, (self.client, self.bucket), self.prefix, self.root = kind, bucket, prefix, tmp_path / "objects"

    def put(self, name: str, data: bytes) -> None:
        if self.kind == "s3":
            self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}/cache/{name}", Body=data)
        else:
            (self.root / name).parent.mkdir(parents=True, exist_ok=True)
            (self.root / name).write_bytes(data)

    def names(self) -> list[str]:
        if self.kind == "s3":
            listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}/cache/")
            return sorted(item["Key"].removeprefix(f"{self.prefix}/cache/") for item in listed.get("Contents", []))
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())


@pytest.fixture(params=["s3", "localdir"])
def raw(request: pytest.FixtureRequest, bucket: tuple[Any, str], prefix: str, tmp_path: Path) -> Raw:
    return Raw(request.param, bucket, prefix, tmp_path)


async def test_entries_and_media_are_written_under_their_names(raw: Raw, make_backend: MakeBackend) -> None:
    tier = make_backend(raw.kind)
    assert isinstance(tier, ObjectStoreCache)
    cache = TieredCache([tier], media_threshold=1000)
    media = os.urandom(5000)
    assert await cache.set(KEY, media, BYTES)
    assert raw.names() == [stored_name("entries", KEY), stored_name("media", KEY)]
    hit = await cache.get(KEY, BYTES)
    assert hit is not None and hit.value == media and hit.location is not None
    assert stored_name("media", KEY) in hit.location  # a file path, or the path of a presigned URL
    await cache.aclose()


async def test_an_entry_stored_before_is_read(raw: Raw, make_backend: MakeBackend) -> None:
    entry = Entry(JSON.dumps({"text": "kept"}), JSON.name, created_at=time.time())
    raw.put(stored_name("entries", KEY), entry.encode())
    tier = make_backend(raw.kind)
    hit = await tier.get(KEY)
    assert hit is not None and hit.value == {"text": "kept"} and hit.tier == "objectstore"
    assert await tier.delete(KEY) and raw.names() == []
