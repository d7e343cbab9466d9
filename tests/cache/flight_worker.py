"""A separate OS process for the single-flight tests: memory + Redis tiers and a Redis lock, as a worker has.

    python flight_worker.py crowd REDIS_URL PREFIX BASE_URL COUNT START_AT
        at wall-clock START_AT, makes COUNT concurrent identical requests through ``get_or_compute``, each
        calling the fake upstream on a miss; prints one JSON line: [{"text": ..., "hit": ...}, ...]
    python flight_worker.py hold REDIS_URL PREFIX LEASE_S
        takes the lock of the test key, prints "computing" and hangs in the computation (to be killed)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx

from contentmill.cache import MemoryCache, RedisCache, SingleFlight, TieredCache, build_key
from contentmill.cache.redis import connect

MESSAGES = [{"role": "user", "content": "Write a tagline for a walnut desk lamp."}]
KEY = build_key(model="openai:gpt-4o-mini", tenant="team-a", messages=MESSAGES, params={"max_tokens": 16})


def make_cache(redis_url: str, prefix: str, lease_s: float = 30.0) -> TieredCache:
    client = connect(redis_url, timeout=2.0)
    flight = SingleFlight(client, prefix=f"{prefix}:lock:", lease_s=lease_s, wait_s=60.0)
    redis = RedisCache(client, prefix=f"{prefix}:e:", owns_client=True)
    return TieredCache([MemoryCache(), redis], flight=flight)


async def crowd(redis_url: str, prefix: str, base_url: str, count: int, start_at: float) -> None:
    async with make_cache(redis_url, prefix) as cache, httpx.AsyncClient(trust_env=False, timeout=30) as http:

        async def call_provider() -> dict[str, Any]:
            response = await http.post(
                base_url + "/chat/completions",
                json={"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 16},
                headers={"Authorization": "Bearer sk-flight-test", "X-Upstream-Latency-Ms": "400"},
            )
            response.raise_for_status()
            return {"text": response.json()["choices"][0]["message"]["content"]}

        await asyncio.sleep(max(0.0, start_at - time.time()))
        results = await asyncio.gather(*(cache.get_or_compute(KEY, call_provider) for _ in range(count)))
    print(json.dumps([{"text": value["text"], "hit": hit} for value, hit in results]), flush=True)


async def hold(redis_url: str, prefix: str, lease_s: float) -> None:
    async with make_cache(redis_url, prefix, lease_s=lease_s) as cache:

        async def never_finishes() -> dict[str, Any]:
            print("computing", flush=True)
            await asyncio.sleep(3600)
            return {}

        await cache.get_or_compute(KEY, never_finishes)


def main(argv: list[str]) -> None:
    mode, redis_url, prefix, *rest = argv
    if mode == "crowd":
        asyncio.run(crowd(redis_url, prefix, rest[0], int(rest[1]), float(rest[2])))
    elif mode == "hold":
        asyncio.run(hold(redis_url, prefix, float(rest[0])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
