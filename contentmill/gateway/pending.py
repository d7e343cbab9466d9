"""Submitted Batch API batches not yet collected, kept where every process sharing the settings finds them.

A pending record holds what collecting needs (the reservation, each item's estimate, tags, claims and cache key,
never a prompt): in a Redis hash when the settings name Redis (every worker and machine), else as one file per
batch in the data directory. Taking the record is the collector's claim: only one collector settles a batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from contentmill.errors import ConfigError
from contentmill.files import write_atomic
from contentmill.metering import Usage
from contentmill.settings import Settings


@dataclass(frozen=True, slots=True)
class PendingItem:
    """What collecting one item needs to know, kept from submission (never the prompt)."""

    custom_id: str
    request_hash: str
    estimate: Usage
    reserved_usd: float
    tags: Mapping[str, str]
    cache_key: str | None  # CacheKey.path
    claims: tuple[tuple[str, str], ...]  # (claim key, unit) of each budget or quota the item counts against

    def as_dict(self) -> dict[str, Any]:
        return {"custom_id": self.custom_id, "request_hash": self.request_hash, "estimate": self.estimate.as_dict(),
                "reserved_usd": self.reserved_usd, "tags": dict(self.tags), "cache_key": self.cache_key,
                "claims": [list(c) for c in self.claims]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingItem:
        return cls(data["custom_id"], data["request_hash"], Usage.from_dict(data["estimate"]),
                   float(data["reserved_usd"]), dict(data["tags"]), data.get("cache_key"),
                   tuple((str(k), str(u)) for k, u in data["claims"]))


@dataclass(frozen=True, slots=True)
class PendingBatch:
    """A submitted batch not yet collected: enough to collect it in any process that shares the store."""

    batch_id: str
    model: str
    submitted_at: float
    reservation: str  # the reservation's JSON
    items: tuple[PendingItem, ...]

    def to_json(self) -> bytes:
        return orjson.dumps({"batch_id": self.batch_id, "model": self.model, "submitted_at": self.submitted_at,
                             "reservation": self.reservation, "items": [i.as_dict() for i in self.items]})

    @classmethod
    def from_json(cls, raw: bytes | str) -> PendingBatch:
        data = json.loads(raw)
        return cls(data["batch_id"], data["model"], float(data["submitted_at"]), data["reservation"],
                   tuple(PendingItem.from_dict(i) for i in data["items"]))

    @property
    def reserved_usd(self) -> float:
        return sum(item.reserved_usd for item in self.items)


class PendingStore:
    """Pending batches by id: a Redis hash when the settings name Redis (shared by every worker), else files."""

    def __init__(self, settings: Settings) -> None:
        self._redis = aioredis.from_url(settings.redis_url) if settings.redis_url else None
        self._hash = settings.redis_prefix + "batches:pending"
        self._dir = settings.data_dir / "batches"

    def _path(self, batch_id: str) -> Path:
        if not batch_id.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{batch_id!r} is not a batch id")
        return self._dir / f"{batch_id}.json"

    async def put(self, pending: PendingBatch) -> None:
        if self._redis is not None:
            await self._redis.hset(self._hash, pending.batch_id, pending.to_json())
            return
        write_atomic(self._path(pending.batch_id), pending.to_json())

    async def get(self, batch_id: str) -> PendingBatch | None:
        if self._redis is not None:
            raw = await self._redis.hget(self._hash, batch_id)
            return None if raw is None else PendingBatch.from_json(raw)
        path = self._path(batch_id)
        return PendingBatch.from_json(path.read_bytes()) if path.is_file() else None

    async def all(self) -> list[PendingBatch]:
        if self._redis is not None:
            return [PendingBatch.from_json(raw) for raw in (await self._redis.hgetall(self._hash)).values()]
        return [PendingBatch.from_json(p.read_bytes()) for p in sorted(self._dir.glob("*.json"))]

    async def take(self, batch_id: str) -> bool:
        """Remove the record; False if another collector took it first (it is then settled once, there)."""
        if self._redis is not None:
            return bool(await self._redis.hdel(self._hash, batch_id))
        try:
            self._path(batch_id).unlink()
        except FileNotFoundError:
            return False
        return True

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


async def pending_batch(settings: Settings, batch_id: str) -> PendingBatch:
    """The pending record of ``batch_id``; a batch this store does not hold is a one-line error."""
    store = PendingStore(settings)
    try:
        found = await store.get(batch_id)
    finally:
        await store.aclose()
    if found is None:
        raise ConfigError(f"no pending batch {batch_id!r} here: it was collected already, or submitted with "
                          "another data directory or Redis (CONTENTMILL_DATA_DIR, CONTENTMILL_REDIS_URL)")
    return found


async def is_pending(settings: Settings, batch_id: str) -> bool:
    store = PendingStore(settings)
    try:
        return await store.get(batch_id) is not None
    finally:
        await store.aclose()


async def pending_batches(settings: Settings) -> list[PendingBatch]:
    store = PendingStore(settings)
    try:
        return await store.all()
    finally:
        await store.aclose()
