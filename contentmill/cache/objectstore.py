"""L3: the object store, S3 (or any S3-compatible store through ``endpoint_url``) or a local directory.

The bytes are kept by the project's one object-store layer (``contentmill.storage``: its S3 client, its atomic
local writes, its errors); this tier keeps what is the cache's own. Entries live under ``entries/`` and media,
stored raw so they can be handed out as they are, under ``media/``: a presigned URL (S3) or a file path (local).
Neither store has a per-second native TTL, so expiry is read from each entry's envelope: an expired entry is a
miss and is deleted with its media. Blocking I/O runs in worker threads, off the event loop: S3 calls, file
writes, and reads of files larger than 64 kB (a small entry is read in place, faster than a thread hop).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict, Unpack

from contentmill.cache.base import BaseCache
from contentmill.cache.entry import Entry, Found, MediaRef
from contentmill.cache.keys import CacheKey
from contentmill.cache.singleflight import SingleFlight
from contentmill.cache.stats import StatsRecorder
from contentmill.errors import ObjectStoreError
from contentmill.storage import LocalStore, ObjectStore, S3Store

log = logging.getLogger("contentmill.cache")
TTL_S = 30 * 86400.0
TIMEOUT_S = 10.0
STALE_TEMP_S = 3600.0
INLINE_READ_MAX = 64 * 1024  # local files up to this size are read on the event loop


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TierOptions(TypedDict, total=False):
    """What every object-store tier takes besides its store (see ``BaseCache``)."""

    ttl: float | None
    timeout: float | None
    backoff_s: float
    max_backoff_s: float
    stats: StatsRecorder | None
    flight: SingleFlight | None
    clock: Callable[[], float]


class ObjectStoreCache(BaseCache):
    """A cache tier over an object store: entry and media naming, media pointers, expiry cleanup."""

    tier = "objectstore"
    errors = (ObjectStoreError, OSError)

    def __init__(self, objects: ObjectStore, **options: Unpack[TierOptions]) -> None:
        """Entries live ``ttl`` seconds (30 days unless told); a call may take ``timeout`` (10 s unless told)."""
        options.setdefault("ttl", TTL_S)
        options.setdefault("timeout", TIMEOUT_S)
        super().__init__(**options)
        self.objects = objects

    @staticmethod
    def _relative(kind: str, key: CacheKey) -> str:
        return f"{kind}/{key.namespace}/{key.scope}/{key.digest[:2]}/{key.digest}"

    def name_of(self, key: CacheKey) -> str:
        return self._relative("entries", key)

    async def _get(self, name: str) -> bytes | None:
        return await asyncio.to_thread(self.objects.get, name)

    async def _put(self, name: str, data: bytes, media_type: str) -> bool:
        await asyncio.to_thread(self.objects.put, name, data, media_type)
        return True

    async def _set(self, name: str, data: bytes, ttl: float | None) -> bool:
        return await self._put(name, data, "application/octet-stream")

    async def _delete(self, name: str) -> bool:
        return await asyncio.to_thread(self.objects.delete, name)

    async def _clear(self, prefix: str) -> int:
        return await asyncio.to_thread(self.objects.clear, prefix)

    async def put_media(self, key: CacheKey, data: bytes, media_type: str) -> MediaRef | None:
        """Store a large payload raw; the returned pointer goes into the entry instead of the payload."""
        if self.backoff.down and not self.backoff.available():
            return None
        name = self._relative("media", key)
        ok, stored = await self._guarded("write", self._put(name, data, media_type))
        if not (ok and stored):
            return None
        self.counters.bytes_written += len(data)
        return MediaRef(name, len(data), await asyncio.to_thread(_digest, data), media_type)

    async def get_media(self, ref: MediaRef) -> bytes | None:
        """The media bytes a pointer names, or None when missing, unreachable or not the bytes it names."""
        if self.backoff.down and not self.backoff.available():
            return None
        ok, data = await self._guarded("read", self._get(ref.name))
        if not ok or data is None:
            return None
        if len(data) != ref.size or await asyncio.to_thread(_digest, data) != ref.sha256:
            self.counters.errors += 1
            log.warning("cache media %s does not match its entry (replaced or damaged); a miss", ref.name)
            return None
        return data

    def locate(self, ref: MediaRef) -> str:
        return self.objects.url(ref.name)

    async def fetch(self, key: CacheKey, *, record: bool = True) -> Found | None:
        entry = await self.read_entry(key, record=record)
        if entry is None:
            return None
        if entry.media is None:
            if record:
                self.record_hit(entry)
            return Found(entry, self.tier, entry.payload)
        data = await self.get_media(entry.media)
        if data is None:
            if record:
                self.counters.misses += 1
            return None
        if record:
            self.record_hit(entry, len(data))
        return Found(entry, self.tier, data, self.locate(entry.media))

    async def _discard(self, name: str, entry: Entry) -> None:
        await super()._discard(name, entry)
        if entry.media is not None:
            await self._guarded("delete", self._delete(entry.media.name))

    async def delete(self, key: CacheKey) -> bool:
        removed = await super().delete(key)
        if self.backoff.down:
            return removed
        ok, media = await self._guarded("delete", self._delete(self._relative("media", key)))
        return removed or bool(ok and media)

    async def clear(self) -> int:
        count = await self._clear("entries/") + await self._clear("media/")
        self.backoff.succeeded()
        return count

    async def release(self) -> None:
        self.objects.close()


class S3Cache(ObjectStoreCache):
    """Objects in an S3 bucket under ``prefix`` (an :class:`S3Store`); a ``client`` passed in stays open.

    Entries carry their own expiry; add a bucket lifecycle rule on the prefix to reclaim space from entries
    that are never read again.
    """

    objects: S3Store

    def __init__(
        self,
        bucket: str,
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        prefix: str = "contentmill/cache/",
        presign_expires_s: int = 3600,
        **options: Unpack[TierOptions],
    ) -> None:
        objects = S3Store(bucket, prefix=prefix, client=client, endpoint_url=endpoint_url, region_name=region_name,
                          timeout_s=options.get("timeout", TIMEOUT_S), presign_expires_s=presign_expires_s)
        super().__init__(objects, **options)


class LocalDirCache(ObjectStoreCache):
    """Objects as files under ``root`` (a :class:`LocalStore`, the embedded profile's L3); media are handed out
    as file paths."""

    objects: LocalStore

    def __init__(self, root: Path, **options: Unpack[TierOptions]) -> None:
        super().__init__(LocalStore(root), **options)

    @property
    def root(self) -> Path:
        return self.objects.root

    async def _get(self, name: str) -> bytes | None:
        try:  # a small file is read in place: a worker thread would cost ten times the read
            with open(self.objects.path(name), "rb") as handle:
                if os.fstat(handle.fileno()).st_size <= INLINE_READ_MAX:
                    return handle.read()
        except FileNotFoundError:
            return None
        return await super()._get(name)

    def _prune(self) -> int:
        self.objects.remove_partials("entries/", STALE_TEMP_S)
        now = self.clock()
        return sum(self._prune_entry(name, now) for name in list(self.objects.keys("entries/")))

    def _prune_entry(self, name: str, now: float) -> int:
        data = self.objects.get(name)
        if data is None:
            return 0
        try:
            entry = Entry.decode(data)
        except ValueError:
            entry = None
        if entry is not None and not entry.expired(now):
            return 0
        self.objects.delete(name)
        if entry is not None and entry.media is not None:
            self.objects.delete(entry.media.name)
        return 1

    async def prune(self) -> int:
        """Delete expired (and unreadable) entries with their media, and stale temporary files; returns how
        many entries went. Reads skip expired entries anyway; this reclaims the disk space."""
        return await asyncio.to_thread(self._prune)
