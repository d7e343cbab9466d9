"""L1: an in-process LRU bounded by bytes, with a TTL per entry.

A hit is a dict lookup plus a move to the recent end; inserting past the byte bound evicts the least recently
used entries first. An entry larger than the whole bound is not kept at all.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from contentmill.cache.base import BaseCache
from contentmill.cache.singleflight import SingleFlight
from contentmill.cache.stats import StatsRecorder

ENTRY_OVERHEAD = 96  # bytes a small entry costs beyond its name and data (dict slot, tuple, ints)


class MemoryCache(BaseCache):
    """Entries as ``name -> (monotonic deadline, bytes)`` in recency order."""

    tier = "memory"

    def __init__(
        self,
        *,
        max_bytes: int = 64 * 2**20,
        ttl: float | None = 3600.0,
        prefix: str = "",
        stats: StatsRecorder | None = None,
        flight: SingleFlight | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"the memory cache needs a positive byte bound (got {max_bytes})")
        super().__init__(prefix=prefix, ttl=ttl, stats=stats, flight=flight, clock=clock)
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _size(name: str, data: bytes) -> int:
        return len(name) + len(data) + ENTRY_OVERHEAD

    def _drop(self, name: str) -> bool:
        item = self._entries.pop(name, None)
        if item is None:
            return False
        self.used_bytes -= self._size(name, item[1])
        return True

    async def _get(self, name: str) -> bytes | None:
        item = self._entries.get(name)
        if item is None:
            return None
        if item[0] <= time.monotonic():
            self._drop(name)
            return None
        self._entries.move_to_end(name)
        return item[1]

    async def _set(self, name: str, data: bytes, ttl: float | None) -> bool:
        size = self._size(name, data)
        self._drop(name)
        if size > self.max_bytes:
            return False
        while self.used_bytes + size > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.counters.evictions += 1
        deadline = float("inf") if ttl is None else time.monotonic() + ttl
        self._entries[name] = (deadline, data)
        self.used_bytes += size
        return True

    async def _delete(self, name: str) -> bool:
        return self._drop(name)

    async def _clear(self, prefix: str) -> int:
        names = [name for name in self._entries if name.startswith(prefix)]
        for name in names:
            self._drop(name)
        return len(names)
