"""An unreachable Redis or S3 costs the caller a miss, never an error; the tier is used again once back."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import pytest
from cache_helpers import RedisServer, eventually, free_port

from contentmill.cache import BYTES, MemoryCache, RedisCache, S3Cache, SingleFlight, TieredCache, build_key
from contentmill.cache.redis import connect
from contentmill.cache.stats import RedisStatsStore, StatsRecorder

RESULT = {"text": "still answered"}


def key(name: str) -> Any:
    return build_key(model="openai:gpt-4o-mini", tenant="team-a", input=name)


async def test_redis_stopped_mid_run_degrades_and_comes_back(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = connect(redis_server.url, timeout=0.3)
    probe = connect(redis_server.url, timeout=0.3)
    redis = RedisCache(
        client, prefix="deg:e:", timeout=0.5, backoff_s=0.1, max_backoff_s=0.2, owns_client=True
    )
    cache = TieredCache(
        [MemoryCache(), redis],
        stats=StatsRecorder(RedisStatsStore(client, "deg"), flush_interval_s=3600),
        flight=SingleFlight(client, prefix="deg:lock:", backoff_s=0.1),
    )
    calls = 0

    async def compute() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return RESULT

    try:
        assert await cache.set(key("before"), RESULT)
        assert await probe.exists(redis.name_of(key("before")))

        redis_server.kill()
        caplog.set_level(logging.WARNING, logger="contentmill.cache")
        hit = await cache.get(key("before"))
        assert hit is not None and hit.tier == "memory"
        assert await cache.get(key("never stored")) is None
        assert await cache.get_or_compute(key("during"), compute) == (RESULT, False)
        for _ in range(20):  # repeated misses during the outage: skipped, not retried each time
            assert await cache.get(key("never stored")) is None
        assert await cache.get_or_compute(key("during"), compute) == (RESULT, True)
        assert calls == 1
        await cache.stats.flush()  # the stats store is down too: kept for later, no error
        errors = cache.stats.snapshot()["redis"]["errors"]
        assert 1 <= errors <= 5
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        unreachable = [m for m in warnings if "redis" in m and ("unreachable" in m or "could not" in m)]
        assert 1 <= len(unreachable) <= 3  # once per component (tier, lock, stats), not once per request

        redis_server.start()

        async def back() -> bool:
            await cache.set(key("after"), RESULT)
            return bool(await probe.exists(redis.name_of(key("after"))))

        assert await eventually(back)
        assert not redis.backoff.down
        await cache.stats.flush()
        saved = await RedisStatsStore(probe, "deg").read()
        assert saved["redis"]["errors"] == cache.stats.snapshot()["redis"]["errors"]
        assert saved["memory"]["hits"] >= 2
    finally:
        await cache.aclose()
        await probe.aclose()


@pytest.fixture
def dead_s3(monkeypatch: pytest.MonkeyPatch) -> S3Cache:
    """An S3 tier whose endpoint has nothing listening (credentials are dummies; nothing is ever sent)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    endpoint = f"http://127.0.0.1:{free_port()}"
    return S3Cache("nowhere", endpoint_url=endpoint, region_name="us-east-1", timeout=1.0, backoff_s=0.1)


async def test_an_unreachable_s3_is_a_miss_not_an_error(dead_s3: S3Cache) -> None:
    async with dead_s3:
        assert await dead_s3.get(key("a")) is None
        await asyncio.sleep(0.15)  # past the back-off: the next call probes again
        assert not await dead_s3.set(key("a"), RESULT)
        assert not await dead_s3.delete(key("a"))
        assert dead_s3.counters.errors >= 1 and dead_s3.backoff.down
        with pytest.raises(Exception):  # noqa: B017 - an explicit clear reports the failure
            await dead_s3.clear()


async def test_the_tiered_cache_serves_without_s3(dead_s3: S3Cache) -> None:
    calls = 0

    async def compute() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return RESULT

    memory = MemoryCache()
    async with TieredCache([memory, dead_s3], media_threshold=1000) as cache:
        assert await cache.get_or_compute(key("x"), compute) == (RESULT, False)
        assert await cache.get_or_compute(key("x"), compute) == (RESULT, True)
        assert calls == 1
        media = os.urandom(5000)
        assert not await cache.set(key("media"), media, BYTES)  # media never fall back into L1
        assert await cache.get(key("media"), BYTES) is None
        assert len(memory) == 1
        assert cache.stats.snapshot()["objectstore"]["errors"] >= 1
