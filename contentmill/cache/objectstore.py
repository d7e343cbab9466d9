"""L3: the object store, S3 (or any S3-compatible store through ``endpoint_url``) or a local directory.

Both keep entries under ``entries/`` and media, stored raw so they can be handed out as they are, under
``media/``: a presigned URL (S3) or a file path (local). Neither has a per-second native TTL, so expiry is
read from each entry's envelope: an expired entry is a miss and is deleted with its media. Writes never
expose half an object: S3 PUTs are atomic, and local files are written to a temporary name and renamed into
place. Blocking I/O runs in worker threads, off the event loop: boto3 calls, file writes, and reads of files
larger than 64 kB (a small entry is read in place, faster than a thread hop).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from abc import abstractmethod
from collections.abc import Callable
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from contentmill.cache.base import BaseCache
from contentmill.cache.entry import Entry, Found, MediaRef
from contentmill.cache.keys import CacheKey
from contentmill.cache.singleflight import SingleFlight
from contentmill.cache.stats import StatsRecorder
from contentmill.files import PARTIAL_PREFIX, write_atomic

log = logging.getLogger("contentmill.cache")
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
STALE_TEMP_S = 3600.0
INLINE_READ_MAX = 64 * 1024  # local files up to this size are read on the event loop


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ObjectStoreCache(BaseCache):
    """What both object stores share: entry and media naming, media pointers, expiry cleanup."""

    tier = "objectstore"

    @abstractmethod
    async def _put_object(self, name: str, data: bytes, media_type: str) -> bool:
        """Store raw media bytes under ``name`` with their media type."""

    @abstractmethod
    def _locate(self, name: str) -> str:
        """Where a user can fetch the object ``name``: a presigned URL or a file path."""

    @staticmethod
    def _relative(kind: str, key: CacheKey) -> str:
        return f"{kind}/{key.namespace}/{key.scope}/{key.digest[:2]}/{key.digest}"

    def name_of(self, key: CacheKey) -> str:
        return self.prefix + self._relative("entries", key)

    async def put_media(self, key: CacheKey, data: bytes, media_type: str) -> MediaRef | None:
        """Store a large payload raw; the returned pointer goes into the entry instead of the payload."""
        if self.health.down and not self.health.available():
            return None
        relative = self._relative("media", key)
        ok, stored = await self._guarded("write", self._put_object(self.prefix + relative, data, media_type))
        if not (ok and stored):
            return None
        self.counters.bytes_written += len(data)
        return MediaRef(relative, len(data), await asyncio.to_thread(_digest, data), media_type)

    async def get_media(self, ref: MediaRef) -> bytes | None:
        """The media bytes a pointer names, or None when missing, unreachable or not the bytes it names."""
        if self.health.down and not self.health.available():
            return None
        ok, data = await self._guarded("read", self._get(self.prefix + ref.name))
        if not ok or data is None:
            return None
        if len(data) != ref.size or await asyncio.to_thread(_digest, data) != ref.sha256:
            self.counters.errors += 1
            log.warning("cache media %s does not match its entry (replaced or damaged); a miss", ref.name)
            return None
        return data

    def locate(self, ref: MediaRef) -> str:
        return self._locate(self.prefix + ref.name)

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
            await self._guarded("delete", self._delete(self.prefix + entry.media.name))

    async def delete(self, key: CacheKey) -> bool:
        removed = await super().delete(key)
        if self.health.down:
            return removed
        ok, media = await self._guarded("delete", self._delete(self.prefix + self._relative("media", key)))
        return removed or bool(ok and media)

    async def clear(self) -> int:
        count = await self._clear(self.prefix + "entries/") + await self._clear(self.prefix + "media/")
        self.health.succeeded()
        return count


class S3Cache(ObjectStoreCache):
    """Objects in an S3 bucket under ``prefix``; boto3 calls run in worker threads.

    Entries carry their own expiry; add a bucket lifecycle rule on the prefix to reclaim space from entries
    that are never read again.
    """

    errors = (BotoCoreError, ClientError, OSError)

    def __init__(
        self,
        bucket: str,
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        prefix: str = "contentmill/cache/",
        ttl: float | None = 30 * 86400.0,
        timeout: float | None = 10.0,
        presign_expires_s: int = 3600,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        stats: StatsRecorder | None = None,
        flight: SingleFlight | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(prefix=prefix, ttl=ttl, timeout=timeout, backoff_s=backoff_s,
                         max_backoff_s=max_backoff_s, stats=stats, flight=flight, clock=clock)
        self.bucket = bucket
        self.presign_expires_s = presign_expires_s
        self.client = client if client is not None else self.make_client(endpoint_url, region_name, timeout)

    @staticmethod
    def make_client(endpoint_url: str | None, region_name: str | None, timeout: float | None) -> Any:
        """A boto3 S3 client that fails fast and speaks to plain S3-compatible stores too."""
        config = Config(
            connect_timeout=min(timeout or 5.0, 5.0), read_timeout=timeout or 60.0,
            retries={"max_attempts": 2, "mode": "standard"}, max_pool_connections=16,
            request_checksum_calculation="when_required", response_checksum_validation="when_required",
        )
        return boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region_name,
                                              config=config)

    def _read(self, name: str) -> bytes | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return None
            raise
        with closing(response["Body"]) as body:
            data: bytes = body.read()
        return data

    def _write(self, name: str, data: bytes, media_type: str) -> bool:
        self.client.put_object(Bucket=self.bucket, Key=name, Body=data, ContentType=media_type)
        return True

    def _remove_all(self, prefix: str) -> int:
        removed = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            names = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if names:
                batch = {"Objects": names, "Quiet": True}
                answer = self.client.delete_objects(Bucket=self.bucket, Delete=batch)
                failed = answer.get("Errors", [])
                if failed:
                    log.warning("%d cache objects under %s could not be deleted (first: %s)", len(failed),
                                prefix, failed[0].get("Code"))
                removed += len(names) - len(failed)
        return removed

    async def _get(self, name: str) -> bytes | None:
        return await asyncio.to_thread(self._read, name)

    async def _set(self, name: str, data: bytes, ttl: float | None) -> bool:
        return await asyncio.to_thread(self._write, name, data, "application/octet-stream")

    async def _put_object(self, name: str, data: bytes, media_type: str) -> bool:
        return await asyncio.to_thread(self._write, name, data, media_type)

    async def _delete(self, name: str) -> bool:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=name)
        return True  # S3 does not say whether the object existed

    async def _clear(self, prefix: str) -> int:
        return await asyncio.to_thread(self._remove_all, prefix)

    def _locate(self, name: str) -> str:
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": name}, ExpiresIn=self.presign_expires_s
        )
        return url

    async def release(self) -> None:
        self.client.close()


class LocalDirCache(ObjectStoreCache):
    """Objects as files under ``root`` (the embedded profile's L3); media are handed out as file paths."""

    errors = (OSError,)

    def __init__(
        self,
        root: Path,
        *,
        ttl: float | None = 30 * 86400.0,
        timeout: float | None = 10.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        stats: StatsRecorder | None = None,
        flight: SingleFlight | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(prefix="", ttl=ttl, timeout=timeout, backoff_s=backoff_s,
                         max_backoff_s=max_backoff_s, stats=stats, flight=flight, clock=clock)
        self.root = root.expanduser().resolve()

    def _path(self, name: str) -> Path:
        return self.root / name

    @staticmethod
    def _read(path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    @staticmethod
    def _unlink(path: Path) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    @staticmethod
    def _remove_tree(top: Path) -> int:
        removed = 0
        for folder, dirs, files in os.walk(top, topdown=False):
            for file in files:
                if not file.startswith(PARTIAL_PREFIX):
                    removed += 1
                Path(folder, file).unlink(missing_ok=True)
            for sub in dirs:
                with suppress(OSError):
                    Path(folder, sub).rmdir()
        return removed

    async def _get(self, name: str) -> bytes | None:
        path = self._path(name)
        try:  # a small file is read in place: a worker thread would cost ten times the read
            with open(path, "rb") as handle:
                if os.fstat(handle.fileno()).st_size <= INLINE_READ_MAX:
                    return handle.read()
        except FileNotFoundError:
            return None
        return await asyncio.to_thread(self._read, path)

    async def _set(self, name: str, data: bytes, ttl: float | None) -> bool:
        await asyncio.to_thread(write_atomic, self._path(name), data)
        return True

    async def _put_object(self, name: str, data: bytes, media_type: str) -> bool:
        await asyncio.to_thread(write_atomic, self._path(name), data)
        return True

    async def _delete(self, name: str) -> bool:
        return await asyncio.to_thread(self._unlink, self._path(name))

    async def _clear(self, prefix: str) -> int:
        return await asyncio.to_thread(self._remove_tree, self._path(prefix))

    def _locate(self, name: str) -> str:
        return str(self._path(name))

    def _prune(self) -> int:
        now, removed = time.time(), 0
        for folder, _dirs, files in os.walk(self.root / "entries"):
            for file in files:
                path = Path(folder, file)
                if file.startswith(PARTIAL_PREFIX):
                    if path.stat().st_mtime < now - STALE_TEMP_S:
                        path.unlink(missing_ok=True)
                    continue
                removed += self._prune_entry(path, self.clock())
        return removed

    def _prune_entry(self, path: Path, now: float) -> int:
        data = self._read(path)
        if data is None:
            return 0
        try:
            entry = Entry.decode(data)
        except ValueError:
            entry = None
        if entry is not None and not entry.expired(now):
            return 0
        path.unlink(missing_ok=True)
        if entry is not None and entry.media is not None:
            self._path(entry.media.name).unlink(missing_ok=True)
        return 1

    async def prune(self) -> int:
        """Delete expired (and unreadable) entries with their media, and stale temporary files; returns how
        many entries went. Reads skip expired entries anyway; this reclaims the disk space."""
        return await asyncio.to_thread(self._prune)

