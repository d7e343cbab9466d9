"""The cache interface and the template every backend fills in.

``Cache`` is what callers use, the same for one backend and for the tiered cache: ``get``, ``set``,
``delete``, ``clear`` and ``get_or_compute`` (single flight: concurrent identical misses make one
computation). ``BaseCache`` owns everything a backend should not repeat: key naming, TTLs, timeouts, counters,
corrupt-entry handling and the back-off that turns an unreachable backend into misses. A backend implements
only ``_get``, ``_set``, ``_delete`` and ``_clear`` of bytes (the aiocache template method).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar, overload

from contentmill.cache.backoff import Backoff, describe
from contentmill.cache.entry import CorruptEntry, Entry, Found, Hit
from contentmill.cache.keys import CacheKey, SecretInCacheKey
from contentmill.cache.serializers import JSON, Serializer
from contentmill.cache.singleflight import SingleFlight
from contentmill.cache.stats import StatsRecorder, TierStats

log = logging.getLogger("contentmill.cache")
T = TypeVar("T")
Cost = float | Callable[[Any], float]


def _cost_of(cost_usd: Cost, value: Any) -> float:
    return float(cost_usd(value) if callable(cost_usd) else cost_usd)


class Cache(ABC):
    """What every cache offers. Subclasses provide ``fetch``/``store``/``delete``/``clear`` of entries.

    ``clock`` is the wall clock entries' lives are measured by (tests pass one they can move).
    """

    def __init__(
        self,
        *,
        stats: StatsRecorder | None = None,
        flight: SingleFlight | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stats = stats or StatsRecorder()
        self.flight = flight or SingleFlight()
        self.clock = clock

    @abstractmethod
    async def fetch(self, key: CacheKey, *, record: bool = True) -> Found | None:
        """The live entry under ``key`` with its payload; ``record=False`` leaves the counters alone."""

    @abstractmethod
    async def store(self, key: CacheKey, entry: Entry, media_type: str = "application/octet-stream") -> bool:
        """Keep ``entry`` under ``key``; False when no tier took it."""

    @abstractmethod
    async def delete(self, key: CacheKey) -> bool:
        """Remove ``key`` (and any media it points to); True when something was removed."""

    @abstractmethod
    async def clear(self) -> int:
        """Remove every entry this cache holds under its prefix; returns how many were removed."""

    @overload
    async def get(self, key: CacheKey) -> Hit[Any] | None: ...

    @overload
    async def get(self, key: CacheKey, serializer: Serializer[T]) -> Hit[T] | None: ...

    async def get(self, key: CacheKey, serializer: Serializer[Any] = JSON) -> Hit[Any] | None:
        """The cached value of ``key``, or None on a miss (an unreachable tier is a miss, never an error)."""
        self.stats.tick()
        found = await self.fetch(key)
        return None if found is None else self._decode(found, serializer)

    async def set(
        self,
        key: CacheKey,
        value: T,
        serializer: Serializer[T] = JSON,
        *,
        ttl: float | None = None,
        cost_usd: float = 0.0,
    ) -> bool:
        """Cache ``value``; ``cost_usd`` is what producing it cost, reported as saved by every later hit.

        ``ttl`` (seconds) bounds the entry's life on every tier; each tier also applies its own limit.
        """
        self.stats.tick()
        if ttl is not None and ttl <= 0:
            raise ValueError(f"ttl must be positive seconds (got {ttl})")
        now = self.clock()
        entry = Entry(
            serializer.dumps(value), serializer.name, cost_usd=max(0.0, float(cost_usd)), created_at=now,
            expires_at=None if ttl is None else now + ttl,
        )
        return await self.store(key, entry, serializer.media_type)

    async def get_or_compute(
        self,
        key: CacheKey,
        compute: Callable[[], Awaitable[T]],
        serializer: Serializer[T] = JSON,
        *,
        ttl: float | None = None,
        cost_usd: Cost = 0.0,
    ) -> tuple[T, bool]:
        """The cached value, or ``compute()``'s, stored for next time: ``(value, hit)``.

        Concurrent callers asking for the same key while it is being computed (in this process, and in others
        when the cache has a Redis lock) wait for that one computation and get ``hit=True``: they did not pay.
        ``cost_usd`` is a number or a function of the computed value (e.g. ``lambda g: g["cost_usd"]``).
        """
        hit = await self.get(key, serializer)
        if hit is not None:
            return hit.value, True
        return await self.compute_missing(key, compute, serializer, ttl=ttl, cost_usd=cost_usd)

    async def compute_missing(
        self,
        key: CacheKey,
        compute: Callable[[], Awaitable[T]],
        serializer: Serializer[T] = JSON,
        *,
        ttl: float | None = None,
        cost_usd: Cost = 0.0,
    ) -> tuple[T, bool]:
        """What ``get_or_compute`` does after its lookup missed, for a caller that has just looked ``key`` up
        itself: the tiers are not read (nor a miss counted) again. Single flight as there."""

        async def produce() -> T:
            value = await compute()
            try:
                await self.set(key, value, serializer, ttl=ttl, cost_usd=_cost_of(cost_usd, value))
            except SecretInCacheKey as exc:
                log.warning("result for %s not cached: %s", key, exc)
            return value

        async def recheck() -> Hit[T] | None:
            found = await self.fetch(key, record=False)
            return None if found is None else self._decode(found, serializer)

        value, shared = await self.flight.run(key.path, produce, recheck)
        if shared:
            row = self.stats.tier("singleflight")
            row.hits += 1
            row.saved_usd += _cost_of(cost_usd, value)
        return value, shared

    def _decode(self, found: Found, serializer: Serializer[T]) -> Hit[T] | None:
        entry = found.entry
        if entry.serializer != serializer.name:
            raise ValueError(
                f"this cache entry was written with the {entry.serializer!r} serializer; read it with the "
                f"same one (not {serializer.name!r}), or keep the two kinds of value in different namespaces"
            )
        try:
            value = serializer.loads(found.payload)
        except ValueError as exc:
            self.stats.tier(found.tier).errors += 1
            log.warning("cache entry in %s could not be read (%s); treated as a miss", found.tier,
                        describe(exc))
            return None
        return Hit(value, found.tier, entry.cost_usd, entry.created_at, entry.expires_at, found.location)

    async def aclose(self) -> None:
        """Flush the counters, then release connections (the counters may need them to flush)."""
        await self.stats.aclose()
        await self.release()

    async def release(self) -> None:
        """Close what this cache holds open; counters are not flushed here."""
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class BaseCache(Cache):
    """One backend. Subclasses set ``tier`` and ``errors`` (what counts as the backend being unreachable)
    and implement the four byte operations; names they receive are ``prefix + key.path``."""

    tier: ClassVar[str]
    errors: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(
        self,
        *,
        prefix: str = "",
        ttl: float | None = None,
        timeout: float | None = None,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        stats: StatsRecorder | None = None,
        flight: SingleFlight | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(stats=stats, flight=flight, clock=clock)
        self.prefix = prefix
        self.ttl = ttl
        self.timeout = timeout
        self.backoff = Backoff(self.tier, backoff_s=backoff_s, max_backoff_s=max_backoff_s)
        self._failures: tuple[type[BaseException], ...] = self.errors + ((TimeoutError,) if timeout else ())
        self.counters: TierStats = self.stats.tier(self.tier)

    def adopt(self, stats: StatsRecorder) -> None:
        """Count into ``stats`` from now on (a tiered cache gathers its tiers' counters in one recorder)."""
        self.stats = stats
        self.counters = stats.tier(self.tier)

    # -- what a backend implements --------------------------------------------------------------------------

    @abstractmethod
    async def _get(self, name: str) -> bytes | None:
        """The bytes stored under ``name``, or None."""

    @abstractmethod
    async def _set(self, name: str, data: bytes, ttl: float | None) -> bool:
        """Store ``data`` under ``name`` for ``ttl`` seconds (None: no expiry); False if it declined."""

    @abstractmethod
    async def _delete(self, name: str) -> bool:
        """Remove ``name``; True when it existed (or when the backend cannot tell)."""

    @abstractmethod
    async def _clear(self, prefix: str) -> int:
        """Remove every name starting with ``prefix``; returns how many."""

    # -- the template ---------------------------------------------------------------------------------------

    def name_of(self, key: CacheKey) -> str:
        return self.prefix + key.path

    async def _guarded(self, operation: str, call: Awaitable[T]) -> tuple[bool, T | None]:
        """Run a backend call under the timeout; a failure becomes ``(False, None)`` and a back-off."""
        try:
            if self.timeout is None:
                result = await call
            else:
                async with asyncio.timeout(self.timeout):
                    result = await call
        except self._failures as exc:
            self._failed(exc, operation)
            return False, None
        if self.backoff.down:
            self.backoff.succeeded()
        return True, result

    def _failed(self, exc: BaseException, operation: str) -> None:
        self.counters.errors += 1
        self.backoff.failed(exc, operation)

    async def read_entry(self, key: CacheKey, *, record: bool = True) -> Entry | None:
        """The live entry under ``key``; misses are counted here, hits by ``record_hit`` once served."""
        if self.backoff.down and not self.backoff.available():
            return None
        name = self.name_of(key)
        try:  # _guarded, inlined: this is every hit's path
            if self.timeout is None:
                data = await self._get(name)
            else:
                async with asyncio.timeout(self.timeout):
                    data = await self._get(name)
        except self._failures as exc:
            self._failed(exc, "read")
            return None
        if self.backoff.down:
            self.backoff.succeeded()
        if data is None:
            if record:
                self.counters.misses += 1
            return None
        try:
            entry = Entry.decode(data)
        except CorruptEntry as exc:
            self.counters.errors += 1
            log.warning("cache tier %s holds an unreadable entry (%s); dropping it", self.tier, exc)
            await self._guarded("delete", self._delete(name))
            return None
        if entry.expired(self.clock()):
            if record:
                self.counters.misses += 1
            await self._discard(name, entry)
            return None
        if record:
            self.counters.bytes_read += len(data)
        return entry

    def record_hit(self, entry: Entry, extra_bytes: int = 0) -> None:
        counters = self.counters
        counters.hits += 1
        counters.saved_usd += entry.cost_usd
        counters.bytes_read += extra_bytes

    async def _discard(self, name: str, entry: Entry) -> None:
        """Drop an expired entry (object stores also drop the media it points to)."""
        await self._guarded("delete", self._delete(name))

    async def write_entry(self, key: CacheKey, entry: Entry) -> bool:
        """Store ``entry``, its life capped by this tier's TTL; False when skipped, declined or failed."""
        if self.backoff.down and not self.backoff.available():
            return False
        now = self.clock()
        entry = entry.capped(self.ttl, now)
        ttl = entry.ttl(now)
        if ttl is not None and ttl <= 0:
            return False
        data = entry.encode()
        ok, stored = await self._guarded("write", self._set(self.name_of(key), data, ttl))
        if ok and stored:
            self.counters.writes += 1
            self.counters.bytes_written += len(data)
            return True
        return False

    # -- Cache ----------------------------------------------------------------------------------------------

    async def fetch(self, key: CacheKey, *, record: bool = True) -> Found | None:
        entry = await self.read_entry(key, record=record)
        if entry is None:
            return None
        if record:
            self.record_hit(entry)
        return Found(entry, self.tier, entry.payload)

    async def store(self, key: CacheKey, entry: Entry, media_type: str = "application/octet-stream") -> bool:
        return await self.write_entry(key, entry)

    async def delete(self, key: CacheKey) -> bool:
        if self.backoff.down and not self.backoff.available():
            return False
        ok, removed = await self._guarded("delete", self._delete(self.name_of(key)))
        return bool(ok and removed)

    async def clear(self) -> int:
        """Remove everything under this tier's prefix; raises if the backend cannot be reached (an explicit
        request deserves an answer, not a silent skip)."""
        count = await self._clear(self.prefix)
        self.backoff.succeeded()
        return count
