"""The tiered cache: promotion on hit, write-through, media only in the object store with pointers above it,
and the single backends' own limits (memory byte bound, local-directory atomicity and pruning)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest
from cache_helpers import Clock, MakeBackend

from contentmill.cache import BYTES, WAV, LocalDirCache, MemoryCache, TieredCache, build_key
from contentmill.cache.memory import ENTRY_OVERHEAD
from contentmill.cache.stats import SqliteStatsStore, StatsRecorder

KEY = build_key(model="openai:gpt-4o-mini", tenant="team-a", input="Describe a walnut desk lamp.")
RESULT = {"text": "A warm walnut lamp.", "cost_usd": 0.003}


@pytest.fixture(params=["tiered", "tiered-local"])
def tiered(request: pytest.FixtureRequest, make_backend: MakeBackend) -> TieredCache:
    cache = make_backend(request.param, media_threshold=64 * 1024)
    assert isinstance(cache, TieredCache)
    return cache


async def test_a_hit_in_a_lower_tier_fills_the_tiers_above(tiered: TieredCache) -> None:
    bottom = tiered.tiers[-1]
    await bottom.set(KEY, RESULT, cost_usd=0.003)
    hit = await tiered.get(KEY)
    assert hit is not None and hit.tier == "objectstore" and hit.value == RESULT
    for tier in tiered.tiers:
        assert await tier.read_entry(KEY, record=False) is not None, tier.tier
    again = await tiered.get(KEY)
    assert again is not None and again.tier == "memory" and again.cost_usd == pytest.approx(0.003)
    stats = tiered.stats.snapshot()
    assert stats["objectstore"]["hits"] == 1 and stats["memory"]["hits"] == 1
    assert stats["memory"]["misses"] == 1
    assert stats["memory"]["saved_usd"] + stats["objectstore"]["saved_usd"] == pytest.approx(0.006)


@pytest.mark.parametrize("kind", ["tiered", "tiered-local"])
async def test_a_promoted_entry_keeps_its_remaining_life(make_backend: MakeBackend, clock: Clock, kind: str) -> None:
    tiered = make_backend(kind, media_threshold=64 * 1024, clock=clock)
    assert isinstance(tiered, TieredCache)
    await tiered.tiers[-1].set(KEY, RESULT, ttl=600)
    clock.advance(300)
    hit = await tiered.get(KEY)
    assert hit is not None and hit.tier == "objectstore"
    clock.advance(450)
    assert await tiered.tiers[0].read_entry(KEY, record=False) is None
    assert await tiered.get(KEY) is None


async def test_writes_go_through_to_every_tier(tiered: TieredCache) -> None:
    assert await tiered.set(KEY, RESULT)
    for tier in tiered.tiers:
        hit = await tier.get(KEY)
        assert hit is not None and hit.value == RESULT, tier.tier


async def test_each_tier_applies_its_own_ttl(make_backend: MakeBackend, clock: Clock) -> None:
    cache = make_backend("tiered-local", clock=clock)
    assert isinstance(cache, TieredCache)
    cache.tiers[0].ttl = 200
    await cache.set(KEY, RESULT)
    clock.advance(350)
    hit = await cache.get(KEY)
    assert hit is not None and hit.tier == "objectstore"


async def test_media_live_only_in_the_object_store(tiered: TieredCache) -> None:
    key = build_key(model="openai:tts-1", tenant="team-a", input="A long narration.", namespace="speech")
    audio = b"RIFF" + os.urandom(300_000)
    assert await tiered.set(key, audio, WAV, cost_usd=0.02)
    for tier in tiered.tiers:
        entry = await tier.read_entry(key, record=False)
        assert entry is not None and entry.media is not None, tier.tier
        assert entry.payload == b"" and len(entry.encode()) < 1024
    hit = await tiered.get(key, WAV)
    assert hit is not None and hit.value == audio and hit.cost_usd == pytest.approx(0.02)
    assert hit.location is not None and hit.location == await tiered.locate(key)
    if hit.location.startswith("http"):
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.get(hit.location)
        assert response.status_code == 200 and response.content == audio
        assert response.headers["content-type"] == "audio/wav"
    else:
        assert Path(hit.location).read_bytes() == audio


async def test_small_values_stay_inline(tiered: TieredCache) -> None:
    assert await tiered.set(KEY, b"small", BYTES)
    entry = await tiered.tiers[0].read_entry(KEY, record=False)
    assert entry is not None and entry.media is None and entry.payload == b"small"
    assert await tiered.locate(KEY) is None


async def test_a_pointer_whose_media_changed_is_a_miss(tiered: TieredCache) -> None:
    first, second = os.urandom(100_000), os.urandom(100_000)
    await tiered.set(KEY, first, BYTES)
    stale_pointer = await tiered.tiers[0].read_entry(KEY, record=False)
    await tiered.set(KEY, second, BYTES)
    assert stale_pointer is not None
    await tiered.tiers[0].write_entry(KEY, stale_pointer)  # L1 still points at the first media
    assert await tiered.get(KEY, BYTES) is None
    assert tiered.stats.snapshot()["objectstore"]["errors"] == 1


async def test_deleting_media_removes_the_object(tiered: TieredCache) -> None:
    await tiered.set(KEY, os.urandom(100_000), BYTES)
    location = await tiered.locate(KEY)
    assert location is not None
    assert await tiered.delete(KEY)
    assert await tiered.get(KEY, BYTES) is None
    if not location.startswith("http"):
        assert not Path(location).exists()


async def test_clear_memory_in_another_process_empties_l1_at_the_next_flush(tmp_path: Path) -> None:
    store = SqliteStatsStore(tmp_path / "stats.sqlite3")
    memory = MemoryCache()
    cache = TieredCache([memory, LocalDirCache(tmp_path / "objects")],
                        stats=StatsRecorder(store, flush_interval_s=3600))
    try:
        await cache.set(KEY, RESULT)  # the first operation reads the epoch
        await cache.stats.flush()
        await store.bump_epoch("memory")  # what `contentmill cache clear --tier memory` does
        assert len(memory) == 1
        await cache.stats.flush()
        assert len(memory) == 0
        hit = await cache.get(KEY)
        assert hit is not None and hit.tier == "objectstore"
    finally:
        await cache.aclose()


async def test_memory_evicts_the_least_recently_used_past_its_byte_bound() -> None:
    keys = [build_key(model="m:x", tenant="t", input=str(i)) for i in range(3)]
    value = b"x" * 1000
    async with MemoryCache(max_bytes=2 * 1400) as memory:
        await memory.set(keys[0], value, BYTES)
        await memory.set(keys[1], value, BYTES)
        assert await memory.get(keys[0], BYTES) is not None  # keys[0] is now the most recent
        await memory.set(keys[2], value, BYTES)
        assert await memory.get(keys[1], BYTES) is None
        assert await memory.get(keys[0], BYTES) is not None and await memory.get(keys[2], BYTES) is not None
        assert memory.used_bytes <= memory.max_bytes and len(memory) == 2
        assert memory.counters.evictions == 1


async def test_memory_does_not_keep_an_entry_larger_than_its_bound() -> None:
    async with MemoryCache(max_bytes=10_000) as memory:
        await memory.set(KEY, b"small", BYTES)
        assert not await memory.set(build_key(model="m:x", tenant="t", input="big"), b"x" * 20_000, BYTES)
        assert await memory.get(KEY, BYTES) is not None  # nothing was evicted for it
        assert memory.used_bytes <= memory.max_bytes


async def test_memory_bound_holds_under_many_writes() -> None:
    async with MemoryCache(max_bytes=50_000) as memory:
        for i in range(500):
            key = build_key(model="m:x", tenant="t", input=str(i))
            await memory.set(key, os.urandom(i * 7 % 3000), BYTES)
            assert memory.used_bytes <= memory.max_bytes
        assert memory.used_bytes == sum(
            len(name) + len(data) + ENTRY_OVERHEAD for name, (_deadline, data) in memory._entries.items()
        )


async def test_local_directory_writes_leave_no_partial_or_temporary_files(tmp_path: Path) -> None:
    async with LocalDirCache(tmp_path) as local:
        payloads = [os.urandom(200_000) for _ in range(8)]
        await asyncio.gather(*(local.set(KEY, payload, BYTES) for payload in payloads))
        hit = await local.get(KEY, BYTES)
        assert hit is not None and hit.value in payloads
        files = [path for path in tmp_path.rglob("*") if path.is_file()]
        assert len(files) == 1 and not files[0].name.startswith(".tmp-")


async def test_local_directory_prune_reclaims_expired_entries_and_their_media(tmp_path: Path) -> None:
    clock = Clock()
    local = LocalDirCache(tmp_path / "objects", clock=clock)
    cache = TieredCache([local], media_threshold=1000, clock=clock)
    try:
        fresh = build_key(model="m:x", tenant="t", input="fresh")
        await cache.set(KEY, os.urandom(5000), BYTES, ttl=200)
        await cache.set(fresh, os.urandom(5000), BYTES)
        (tmp_path / "objects" / "entries" / "stray.bin").write_bytes(b"garbage")
        clock.advance(300)
        assert await local.prune() == 2  # the expired entry and the unreadable one
        names = sorted(str(p.relative_to(tmp_path / "objects")) for p in (tmp_path / "objects").rglob("*")
                       if p.is_file())
        assert len(names) == 2 and all(fresh.digest in name for name in names)
    finally:
        await cache.aclose()

