"""The tiered cache: L1 memory -> L2 Redis -> L3 object store, one ``Cache`` in front of all of them.

Reads go down the tiers and copy a hit into the tiers above it (with the entry's remaining life). Writes go
to every tier at once. A payload above ``media_threshold`` bytes (audio, video) is written only to the object
store, raw; every tier, L3 included, gets a small pointer entry instead, and a hit hands out the media's
presigned URL (S3) or file path (local directory) along with its bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from contentmill.cache.base import BaseCache, Cache
from contentmill.cache.entry import Entry, Found
from contentmill.cache.keys import CacheKey
from contentmill.cache.memory import MemoryCache
from contentmill.cache.objectstore import ObjectStoreCache
from contentmill.cache.singleflight import SingleFlight
from contentmill.cache.stats import StatsRecorder

DEFAULT_MEDIA_THRESHOLD = 256 * 1024


class TieredCache(Cache):
    """Tiers from fastest to largest; all count into this cache's ``stats`` and read its ``clock``."""

    def __init__(
        self,
        tiers: Sequence[BaseCache],
        *,
        media_threshold: int = DEFAULT_MEDIA_THRESHOLD,
        stats: StatsRecorder | None = None,
        flight: SingleFlight | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not tiers:
            raise ValueError("a tiered cache needs at least one tier")
        super().__init__(stats=stats, flight=flight, clock=clock)
        self.tiers = list(tiers)
        for tier in self.tiers:
            tier.adopt(self.stats)
            tier.clock = clock
        self.objectstore = next((t for t in reversed(self.tiers) if isinstance(t, ObjectStoreCache)), None)
        self.media_threshold = media_threshold
        self.stats.on_memory_epoch = self.clear_memory

    def tier(self, kind: str) -> BaseCache | None:
        """The first tier of a kind (``memory``, ``redis``, ``objectstore``), if this cache has one."""
        return next((t for t in self.tiers if t.tier == kind), None)

    async def fetch(self, key: CacheKey, *, record: bool = True) -> Found | None:
        for index, tier in enumerate(self.tiers):
            entry = await tier.read_entry(key, record=record)
            if entry is None:
                continue
            payload, location = entry.payload, None
            if entry.media is not None:
                store = self.objectstore
                media = await store.get_media(entry.media) if store else None
                if store is None or media is None:  # the object is gone or unreachable: no hit
                    if record:
                        tier.counters.misses += 1
                    return None
                payload, location = media, store.locate(entry.media)
            if record:
                tier.record_hit(entry, len(payload) if entry.media else 0)
            if index:
                await self._write(self.tiers[:index], key, entry)
            return Found(entry, tier.tier, payload, location)
        return None

    async def store(self, key: CacheKey, entry: Entry, media_type: str = "application/octet-stream") -> bool:
        if self.objectstore is not None and len(entry.payload) > self.media_threshold:
            ref = await self.objectstore.put_media(key, entry.payload, media_type)
            if ref is None:
                return False  # media stay out of L1/L2 even when the object store is away
            entry = replace(entry, payload=b"", media=ref)
        return await self._write(self.tiers, key, entry)

    @staticmethod
    async def _write(tiers: Sequence[BaseCache], key: CacheKey, entry: Entry) -> bool:
        if len(tiers) == 1:
            return await tiers[0].write_entry(key, entry)
        return any(await asyncio.gather(*(tier.write_entry(key, entry) for tier in tiers)))

    async def delete(self, key: CacheKey) -> bool:
        return any(await asyncio.gather(*(tier.delete(key) for tier in self.tiers)))

    async def clear(self) -> int:
        return sum([await tier.clear() for tier in self.tiers])

    async def clear_memory(self) -> int:
        """Empty the in-process tiers (another process asked for it through the stats store's epoch)."""
        return sum([await tier.clear() for tier in self.tiers if isinstance(tier, MemoryCache)])

    async def locate(self, key: CacheKey) -> str | None:
        """The presigned URL or file path of the media cached under ``key``, without fetching its bytes."""
        if self.objectstore is None:
            return None
        for tier in self.tiers:
            entry = await tier.read_entry(key, record=False)
            if entry is not None:
                return self.objectstore.locate(entry.media) if entry.media is not None else None
        return None

    async def release(self) -> None:
        # The tiers share this cache's counters, flushed once by aclose before any tier lets go of its client.
        for tier in self.tiers:
            await tier.release()
