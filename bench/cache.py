"""Cache hit latency per tier, each next to the raw backend operation it wraps, and next to a provider call.

Figures (one JSON line each, all from one run):
- hit_latency per tier: p50/p99 of a cache hit vs the raw operation on the same stored bytes: a dict
  lookup (L1), a redis-py GET on the same client (L2), a boto3 get_object on the same client (L3, S3 over
  HTTP, moto's server in its own process) and a file read (L3, local directory); ratio = hit p50 / raw p50.
- hit_vs_provider: a hit through the tiered cache (served by each tier) vs a call to the fake OpenAI upstream.
Targets: L1 hit under 20 us; L2 hit under 1.5x a raw GET; L3 (S3) hit under 1.5x a raw get_object.
Rounds alternate between a hit and its baseline so machine noise hits both alike.

    .venv/bin/python bench/cache.py [SAMPLES_PER_ROUND] [ROUNDS]     (Redis: CONTENTMILL_REDIS_URL or :6379)
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import boto3
import httpx

from contentmill.cache import (
    JSON,
    BaseCache,
    LocalDirCache,
    MemoryCache,
    RedisCache,
    S3Cache,
    TieredCache,
    build_key,
)
from contentmill.cache.redis import connect
from contentmill.testing.harness import start_upstream

KEY = build_key(model="openai:gpt-4o-mini", tenant="team-a", input="Write a tagline for a ceramic mug.")
# A typical cached text result (~1 kB stored).
VALUE = {
    "model": "openai:gpt-4o-mini", "text": "Hand-thrown stoneware that keeps your coffee warm. " * 12,
    "usage": {"input_tokens": 42, "output_tokens": 160}, "cost_usd": 0.000102, "finish_reason": "stop",
}
Call = Callable[[], Awaitable[object]]
TARGETS = {"memory": ("p50_us", 20.0), "redis": ("ratio", 1.5), "s3": ("ratio", 1.5)}


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "cache", **fields}), flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server in its own process, so it does not share this process's CPU and GIL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"http://127.0.0.1:{port}"
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise SystemExit("moto.server did not start")
        time.sleep(0.05)


async def samples(call: Call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter_ns()
        await call()
        out.append((time.perf_counter_ns() - started) / 1000)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def compare(calls: dict[str, Call], n: int, rounds: int) -> dict[str, list[float]]:
    """Latencies (us) of each call, alternating between them round by round after a warm-up."""
    for call in calls.values():
        await samples(call, max(20, n // 10))
    out: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            out[name] += await samples(call, n)
    return out


def report(figure: str, tier: str, hit: list[float], base: list[float], baseline: str) -> None:
    p50, p99 = statistics.median(hit), percentile(hit, 0.99)
    b50, b99 = statistics.median(base), percentile(base, 0.99)
    fields: dict[str, Any] = {
        "figure": figure, "tier": tier, "p50_us": round(p50, 2), "p99_us": round(p99, 2),
        "baseline": baseline, "baseline_p50_us": round(b50, 2), "baseline_p99_us": round(b99, 2),
        "ratio": round(p50 / b50, 3), "ratio_p99": round(p99 / b99, 3), "samples": len(hit),
    }
    if tier in TARGETS and figure == "hit_latency":
        metric, limit = TARGETS[tier]
        fields.update(target=f"{metric} < {limit:g}", met=fields[metric] < limit)
    emit(**fields)


async def tier_figures(n: int, rounds: int, redis_url: str, s3: tuple[Any, str], folder: Path) -> None:
    s3_client, bucket = s3
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    redis_client = connect(redis_url, timeout=2.0)
    memory = MemoryCache()
    redis = RedisCache(redis_client, prefix=f"{prefix}:e:")
    s3_cache = S3Cache(bucket, client=s3_client, prefix=f"{prefix}/")
    local = LocalDirCache(folder)
    raw_dict: OrderedDict[str, bytes] = OrderedDict()
    try:
        for tier in (memory, redis, s3_cache, local):
            await tier.set(KEY, VALUE, JSON)
        raw_dict[memory.name_of(KEY)] = b"x"
        name = redis.name_of(KEY)

        async def dict_lookup() -> object:
            return raw_dict.get(memory.name_of(KEY))

        async def raw_get() -> object:
            return await redis_client.get(name)

        def get_object() -> bytes:
            body = s3_client.get_object(Bucket=bucket, Key=s3_cache.objects.name(s3_cache.name_of(KEY)))["Body"]
            data: bytes = body.read()
            body.close()
            return data

        async def raw_get_object() -> object:
            return get_object()

        async def raw_read() -> object:
            return Path(local.root, local.name_of(KEY)).read_bytes()

        def hit(tier: BaseCache) -> Call:
            async def call() -> object:
                found = await tier.get(KEY, JSON)
                assert found is not None
                return found

            return call

        pairs: list[tuple[str, Call, str, Call, int]] = [
            ("memory", hit(memory), "dict lookup", dict_lookup, n * 10),
            ("redis", hit(redis), "redis-py GET", raw_get, n),
            ("s3", hit(s3_cache), "boto3 get_object", raw_get_object, max(50, n // 4)),
            ("localdir", hit(local), "file read", raw_read, n),
        ]
        for tier_name, ours, baseline, raw, count in pairs:
            times = await compare({"hit": ours, "raw": raw}, count, rounds)
            report("hit_latency", tier_name, times["hit"], times["raw"], baseline)
    finally:
        await redis.clear()
        await s3_cache.clear()
        await redis_client.aclose()


async def provider_figures(n: int, rounds: int, redis_url: str, s3: tuple[Any, str], base_url: str) -> None:
    s3_client, bucket = s3
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    redis_client = connect(redis_url, timeout=2.0)
    l1, l2 = MemoryCache(), RedisCache(redis_client, prefix=f"{prefix}:e:")
    l3 = S3Cache(bucket, client=s3_client, prefix=f"{prefix}/")
    cache = TieredCache([l1, l2, l3])
    messages = [{"role": "user", "content": "Write a tagline for a mug."}]
    payload = {"model": "gpt-4o-mini", "messages": messages, "max_tokens": 16}
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:

        async def provider() -> object:
            response = await http.post(base_url + "/chat/completions", json=payload,
                                       headers={"Authorization": "Bearer sk-bench"})
            return response.json()

        async def served_by(level: int) -> float:
            """One hit served by tier ``level`` (the tiers above emptied first, outside the timing), in us."""
            for tier in cache.tiers[:level]:
                await tier.delete(KEY)
            started = time.perf_counter_ns()
            found = await cache.get(KEY, JSON)
            elapsed = (time.perf_counter_ns() - started) / 1000
            assert found is not None and found.tier == cache.tiers[level].tier
            return elapsed

        await cache.set(KEY, VALUE, JSON)
        times = await compare({"provider": provider}, max(50, n // 4), rounds)
        for level, tier in enumerate(("memory", "redis", "s3")):
            hits = [await served_by(level) for _ in range(max(50, n // 4) * rounds)]
            report("hit_vs_provider", tier, hits, times["provider"], "fake upstream chat completion (httpx)")
    await cache.clear()
    await redis_client.aclose()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    redis_url = os.environ.get("CONTENTMILL_REDIS_URL", "redis://127.0.0.1:6379/0")
    moto, endpoint = start_moto()
    s3_client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
        region_name="us-east-1",
    )
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        s3_client.create_bucket(Bucket=bucket)
        with tempfile.TemporaryDirectory() as folder, start_upstream("--latency-ms", "0") as upstream:
            asyncio.run(tier_figures(n, rounds, redis_url, (s3_client, bucket), Path(folder)))
            asyncio.run(provider_figures(n, rounds, redis_url, (s3_client, bucket), upstream.base_url))
    finally:
        s3_client.close()
        moto.terminate()
        moto.wait()


if __name__ == "__main__":
    main()
