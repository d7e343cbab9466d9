"""The same cases over every backend (memory, Redis, a local directory, moto S3 over HTTP) and tiered."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx
import pytest
from cache_helpers import Clock, raw_blobs

from contentmill.cache import (
    BYTES,
    JSON,
    BaseCache,
    Cache,
    Entry,
    SecretInCacheKey,
    TieredCache,
    build_key,
)
from contentmill.testing.harness import Upstream

KEY = build_key(model="openai:gpt-4o-mini", tenant="team-a", input="Describe a walnut desk lamp.")
RESULT = {"text": "A warm walnut lamp for late reading.", "cost_usd": 0.0021}


def tiers_of(cache: Cache) -> list[BaseCache]:
    if isinstance(cache, TieredCache):
        return cache.tiers
    assert isinstance(cache, BaseCache)
    return [cache]


async def test_a_miss_then_the_stored_value(cache: Cache) -> None:
    assert await cache.get(KEY) is None
    assert await cache.set(KEY, RESULT, cost_usd=0.0021)
    hit = await cache.get(KEY)
    assert hit is not None
    assert hit.value == RESULT
    assert hit.cost_usd == pytest.approx(0.0021)
    assert hit.tier == tiers_of(cache)[0].tier
    stats = cache.stats.snapshot()[hit.tier]
    assert stats["hits"] == 1 and stats["misses"] >= 1
    assert stats["saved_usd"] == pytest.approx(0.0021)
    assert stats["bytes_written"] > 0 and stats["bytes_read"] > 0


async def test_bytes_come_back_byte_for_byte(cache: Cache) -> None:
    key = build_key(model="openai:tts-1", tenant="team-a", input="hello", namespace="speech")
    for size in (0, 1, 4096, 1_500_000):
        payload = os.urandom(size)
        assert await cache.set(key, payload, BYTES)
        hit = await cache.get(key, BYTES)
        assert hit is not None and hit.value == payload


async def test_get_or_compute_pays_once_and_reports_what_a_hit_saved(cache: Cache) -> None:
    calls = 0

    async def compute() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return RESULT

    first = await cache.get_or_compute(KEY, compute, cost_usd=lambda value: value["cost_usd"])
    second = await cache.get_or_compute(KEY, compute, cost_usd=lambda value: value["cost_usd"])
    assert first == (RESULT, False)
    assert second == (RESULT, True)
    assert calls == 1
    saved = sum(row["saved_usd"] for row in cache.stats.snapshot().values())
    assert saved == pytest.approx(RESULT["cost_usd"])


async def test_an_entry_expires_after_its_ttl(clocked_cache: Cache, clock: Clock) -> None:
    await clocked_cache.set(KEY, RESULT, ttl=300)
    clock.advance(299)
    assert await clocked_cache.get(KEY) is not None
    clock.advance(2)
    assert await clocked_cache.get(KEY) is None


async def test_ttl_must_be_positive(cache: Cache) -> None:
    with pytest.raises(ValueError, match="ttl must be positive"):
        await cache.set(KEY, RESULT, ttl=0)


async def test_delete_removes_the_entry(cache: Cache) -> None:
    await cache.set(KEY, RESULT)
    assert await cache.delete(KEY)
    assert await cache.get(KEY) is None


async def test_clear_removes_every_entry(cache: Cache) -> None:
    keys = [build_key(model="m:x", tenant=f"team-{i}", input="same words") for i in range(5)]
    for key in keys:
        await cache.set(key, RESULT)
    assert await cache.clear() >= len(keys)
    for key in keys:
        assert await cache.get(key) is None


async def test_one_tenant_never_reads_another_tenants_result(cache: Cache) -> None:
    fields: dict[str, Any] = {"model": "openai:gpt-4o-mini", "input": "Name a colour.", "params": {"seed": 7}}
    team_a, team_b = build_key(tenant="team-a", **fields), build_key(tenant="team-b", **fields)
    await cache.set(team_a, {"text": "teal"})
    assert team_a != team_b
    assert await cache.get(team_b) is None
    shared_a = build_key(tenant="team-a", shareable=True, **fields)
    shared_b = build_key(tenant="team-b", shareable=True, **fields)
    assert shared_a == shared_b
    await cache.set(shared_a, {"text": "ochre"})
    hit = await cache.get(shared_b)
    assert hit is not None and hit.value == {"text": "ochre"}
    own = await cache.get(team_a)
    assert own is not None and own.value == {"text": "teal"}


async def test_32_concurrent_identical_requests_compute_once(cache: Cache) -> None:
    calls = 0

    async def compute() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return RESULT

    results = await asyncio.gather(*(cache.get_or_compute(KEY, compute, cost_usd=0.5) for _ in range(32)))
    assert calls == 1
    assert all(value == RESULT for value, _ in results)
    assert sorted(hit for _, hit in results) == [False] + [True] * 31
    assert cache.stats.snapshot()["singleflight"]["saved_usd"] == pytest.approx(31 * 0.5)


async def test_a_failed_computation_fails_its_waiters_and_is_not_cached(cache: Cache) -> None:
    calls = 0

    async def broken() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        raise RuntimeError("provider down")

    calls_made = (cache.get_or_compute(KEY, broken) for _ in range(4))
    outcomes = await asyncio.gather(*calls_made, return_exceptions=True)
    assert calls == 1
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    assert await cache.get(KEY) is None

    async def working() -> dict[str, Any]:
        return RESULT

    assert await cache.get_or_compute(KEY, working) == (RESULT, False)


@pytest.mark.parametrize("damage", ["garbage", "cut off"])
async def test_an_unreadable_entry_is_a_counted_miss(cache: Cache, damage: str) -> None:
    whole = Entry(JSON.dumps(RESULT), JSON.name, created_at=time.time()).encode()
    stored = b"not an envelope" if damage == "garbage" else whole[: len(whole) - 5]
    for tier in tiers_of(cache):
        await tier._set(tier.name_of(KEY), stored, None)
    assert await cache.get(KEY) is None
    assert sum(row["errors"] for row in cache.stats.snapshot().values()) >= 1
    assert await cache.set(KEY, RESULT)
    hit = await cache.get(KEY)
    assert hit is not None and hit.value == RESULT


async def test_reading_with_another_serializer_is_refused(cache: Cache) -> None:
    await cache.set(KEY, RESULT)
    with pytest.raises(ValueError, match="serializer"):
        await cache.get(KEY, BYTES)


async def test_secrets_reach_neither_keys_nor_stored_values(cache: Cache, upstream: Any) -> None:
    api_key = "sk-test-cache-0123456789abcdefXYZ"
    server: Upstream = upstream()
    messages = [{"role": "user", "content": "Say hi."}]
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": messages, "max_tokens": 8}

    async def call_provider() -> dict[str, Any]:
        async with httpx.AsyncClient(trust_env=False) as client:
            headers = {"Authorization": f"Bearer {api_key}"}
            response = await client.post(server.base_url + "/chat/completions", json=body, headers=headers)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    with pytest.raises(SecretInCacheKey) as refused:
        build_key(model="openai:gpt-4o-mini", tenant="team-a", messages=body["messages"],
                  params={"max_tokens": 8, "api_key": api_key})
    assert api_key not in str(refused.value)
    with pytest.raises(SecretInCacheKey):
        build_key(model="openai:gpt-4o-mini", tenant="team-a", messages=body["messages"],
                  params={"user": api_key})

    key = build_key(model="openai:gpt-4o-mini", tenant="team-a", messages=body["messages"],
                    params={"max_tokens": 8})
    answer, hit = await cache.get_or_compute(key, call_provider)
    assert not hit and answer["choices"][0]["message"]["content"]

    leaky_key = build_key(model="openai:gpt-4o-mini", tenant="team-a", input="leaky")

    async def leaky() -> dict[str, Any]:
        return {**answer, "request": {"headers": {"authorization": f"Bearer {api_key}"}}}

    value, hit = await cache.get_or_compute(leaky_key, leaky)  # returned to the caller, never stored
    assert not hit and value["request"]
    with pytest.raises(SecretInCacheKey):
        await cache.set(leaky_key, {"note": f"the key is {api_key}"})
    assert await cache.get(leaky_key) is None

    blobs = await raw_blobs(cache)
    assert any(b"choices" in blob for blob in blobs)  # the answer itself is stored
    assert not any(api_key.encode() in blob or b"Bearer" in blob for blob in blobs)
    assert server.stats()["requests"] == 1
