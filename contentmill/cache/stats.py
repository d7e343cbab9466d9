"""Per-tier counters (hits, misses, bytes, errors, saved USD), kept in memory and flushed to a shared store.

Counting is an attribute increment on the hit path; every few seconds (and on close) the increments since
the last flush go to a store that other processes read: a Redis hash when Redis is configured, else a SQLite
file in CONTENTMILL_DATA_DIR. The store also holds a per-tier *epoch*, so ``contentmill cache clear --tier
memory`` in one process empties the in-process tier of every other process at its next flush.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import closing
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("contentmill.cache")

TIERS = ("memory", "redis", "objectstore", "singleflight")
Deltas = Mapping[str, Mapping[str, float]]


@dataclass(slots=True)
class TierStats:
    """What one tier did. ``saved_usd`` sums the cost of the generations its hits replaced."""

    hits: int = 0
    misses: int = 0
    writes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    errors: int = 0
    evictions: int = 0
    saved_usd: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def since(self, earlier: TierStats) -> dict[str, float]:
        """The non-zero differences from an earlier copy."""
        now, then = self.as_dict(), earlier.as_dict()
        return {name: now[name] - then[name] for name in now if now[name] != then[name]}


FIELDS = tuple(f.name for f in fields(TierStats))


def summarize(rows: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Complete rows (every field, ints as ints) for the known tiers plus any others present."""
    out: dict[str, dict[str, float]] = {}
    for tier in [*TIERS, *sorted(set(rows) - set(TIERS))]:
        row = rows.get(tier, {})
        out[tier] = {name: (float(row.get(name, 0)) if name == "saved_usd" else int(row.get(name, 0)))
                     for name in FIELDS}
    return out


class StatsStore(Protocol):
    """Where counters from every process add up."""

    description: str

    async def add(self, deltas: Deltas) -> None: ...

    async def read(self) -> dict[str, dict[str, float]]: ...

    async def epoch(self, tier: str) -> int: ...

    async def bump_epoch(self, tier: str) -> int: ...


class RedisStatsStore:
    """Counters in one Redis hash per namespace (``tier.field`` fields), epochs in another."""

    def __init__(self, client: Redis, namespace: str) -> None:
        self.client = client
        self.key = f"{namespace}:stats"
        self.epochs_key = f"{namespace}:stats:epochs"
        self.description = f"redis hash {self.key}"

    async def add(self, deltas: Deltas) -> None:
        async with self.client.pipeline(transaction=True) as pipe:  # all of a flush counts, or none
            for tier, row in deltas.items():
                for name, amount in row.items():
                    if name == "saved_usd":
                        pipe.hincrbyfloat(self.key, f"{tier}.{name}", amount)
                    else:
                        pipe.hincrby(self.key, f"{tier}.{name}", int(amount))
            await pipe.execute()

    async def read(self) -> dict[str, dict[str, float]]:
        rows: dict[str, dict[str, float]] = {}
        for field, value in (await self.client.hgetall(self.key)).items():
            tier, _, name = (field.decode() if isinstance(field, bytes) else field).partition(".")
            rows.setdefault(tier, {})[name] = float(value)
        return rows

    async def epoch(self, tier: str) -> int:
        value = await self.client.hget(self.epochs_key, tier)
        return int(value or 0)

    async def bump_epoch(self, tier: str) -> int:
        return int(await self.client.hincrby(self.epochs_key, tier, 1))


class SqliteStatsStore:
    """Counters in a small SQLite file; each flush is one transaction, so processes add up safely."""

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS counters "
        "(tier TEXT, field TEXT, value REAL NOT NULL, PRIMARY KEY (tier, field))",
        "CREATE TABLE IF NOT EXISTS epochs (tier TEXT PRIMARY KEY, epoch INTEGER NOT NULL)",
    )

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"sqlite file {path}"

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=10.0)
        for statement in self.SCHEMA:
            connection.execute(statement)
        return connection

    def _add(self, deltas: Deltas) -> None:
        rows = [(tier, name, amount) for tier, row in deltas.items() for name, amount in row.items()]
        with closing(self._connect()) as db, db:
            db.executemany(
                "INSERT INTO counters VALUES (?, ?, ?) "
                "ON CONFLICT (tier, field) DO UPDATE SET value = value + excluded.value",
                rows,
            )

    def _read(self) -> dict[str, dict[str, float]]:
        rows: dict[str, dict[str, float]] = {}
        with closing(self._connect()) as db:
            for tier, name, value in db.execute("SELECT tier, field, value FROM counters"):
                rows.setdefault(tier, {})[name] = value
        return rows

    def _epoch(self, tier: str) -> int:
        with closing(self._connect()) as db:
            row = db.execute("SELECT epoch FROM epochs WHERE tier = ?", (tier,)).fetchone()
        return int(row[0]) if row else 0

    def _bump(self, tier: str) -> int:
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT INTO epochs VALUES (?, 1) ON CONFLICT (tier) DO UPDATE SET epoch = epoch + 1", (tier,)
            )
            return int(db.execute("SELECT epoch FROM epochs WHERE tier = ?", (tier,)).fetchone()[0])

    async def add(self, deltas: Deltas) -> None:
        await asyncio.to_thread(self._add, deltas)

    async def read(self) -> dict[str, dict[str, float]]:
        return await asyncio.to_thread(self._read)

    async def epoch(self, tier: str) -> int:
        return await asyncio.to_thread(self._epoch, tier)

    async def bump_epoch(self, tier: str) -> int:
        return await asyncio.to_thread(self._bump, tier)


STORE_ERRORS = (RedisError, OSError, sqlite3.Error)


class StatsRecorder:
    """The counters of one cache instance and their periodic flush to a shared store.

    ``on_memory_epoch`` runs when another process bumped the memory epoch (asked every process to clear L1).
    """

    def __init__(
        self,
        store: StatsStore | None = None,
        *,
        flush_interval_s: float = 2.0,
        on_memory_epoch: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.store = store
        self.flush_interval_s = flush_interval_s
        self.on_memory_epoch = on_memory_epoch
        self.tiers: dict[str, TierStats] = {}
        self._flushed: dict[str, TierStats] = {}
        self._next_flush = 0.0  # the first operation flushes at once, which also reads the memory epoch
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one flush at a time, or two would send the same increments
        self._memory_epoch: int | None = None
        self._failing = False

    def tier(self, name: str) -> TierStats:
        """The live counters of a tier (created at zero)."""
        stats = self.tiers.get(name)
        if stats is None:
            stats = self.tiers[name] = TierStats()
            self._flushed[name] = TierStats()
        return stats

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {name: stats.as_dict() for name, stats in self.tiers.items()}

    def tick(self) -> None:
        """Start a background flush when one is due (called on every cache operation; costs a clock read)."""
        if self.store is None or time.monotonic() < self._next_flush:
            return
        if self._task is None or self._task.done():
            self._next_flush = time.monotonic() + self.flush_interval_s
            self._task = asyncio.get_running_loop().create_task(self.flush())

    async def flush(self) -> None:
        """Send the increments since the last flush; on failure they stay pending for the next one."""
        if self.store is None:
            return
        async with self._lock:
            await self._flush(self.store)

    async def _flush(self, store: StatsStore) -> None:
        current = {name: replace(stats) for name, stats in self.tiers.items()}
        deltas = {name: row for name in current if (row := current[name].since(self._flushed[name]))}
        try:
            if deltas:
                await store.add(deltas)
            self._flushed.update(current)
            await self._follow_memory_epoch(store)
        except STORE_ERRORS as exc:
            if not self._failing:
                log.warning("cache stats could not be saved to %s (%s); will retry", store.description,
                            type(exc).__name__)
            self._failing = True
            return
        if self._failing:
            log.info("cache stats saved to %s again", store.description)
        self._failing = False

    async def _follow_memory_epoch(self, store: StatsStore) -> None:
        if self.on_memory_epoch is None:
            return
        epoch = await store.epoch("memory")
        if self._memory_epoch is not None and epoch != self._memory_epoch:
            await self.on_memory_epoch()
        self._memory_epoch = epoch

    async def aclose(self) -> None:
        """Wait for a running flush, then flush what is left."""
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()
