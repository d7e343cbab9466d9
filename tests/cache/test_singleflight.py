"""Single flight across OS processes through a Redis lock, with the fake OpenAI upstream as the provider."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from contentmill.cache import MemoryCache, RedisCache, SingleFlight, TieredCache, build_key
from contentmill.testing.harness import Upstream

WORKER = str(Path(__file__).with_name("flight_worker.py"))
# The key flight_worker.py uses (same model, messages and parameters).
KEY = build_key(
    model="openai:gpt-4o-mini", tenant="team-a", params={"max_tokens": 16},
    messages=[{"role": "user", "content": "Write a tagline for a walnut desk lamp."}],
)


def worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, WORKER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.fixture
def holder(redis_url: str, prefix: str) -> Iterator[Callable[[float], subprocess.Popen[str]]]:
    """Start a process that takes the key's lock and hangs computing; killed at the end in any case."""
    started: list[subprocess.Popen[str]] = []

    def start(lease_s: float) -> subprocess.Popen[str]:
        process = worker("hold", redis_url, prefix, str(lease_s))
        started.append(process)
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line == "computing", process.stderr.read() if process.stderr else ""
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


def local_cache(
    redis_client: Redis, prefix: str, *, lease_s: float = 30.0, wait_s: float = 60.0
) -> TieredCache:
    flight = SingleFlight(redis_client, prefix=f"{prefix}:lock:", lease_s=lease_s, wait_s=wait_s)
    return TieredCache([MemoryCache(), RedisCache(redis_client, prefix=f"{prefix}:e:")], flight=flight)


async def test_32_identical_requests_in_2_processes_make_one_upstream_call(
    upstream: Callable[..., Upstream], redis_url: str, redis_client: Redis, prefix: str
) -> None:
    server = upstream()
    start_at = f"{time.time() + 3.0:.3f}"  # both processes begin together, after their imports
    processes = [worker("crowd", redis_url, prefix, server.base_url, "16", start_at) for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    results = [item for out, _err in outputs for item in json.loads(out)]
    assert len(results) == 32
    assert [item["hit"] for item in results].count(False) == 1
    assert len({item["text"] for item in results}) == 1 and results[0]["text"]
    assert server.stats()["requests"] == 1
    assert not await redis_client.exists(f"{prefix}:lock:{KEY.path}")  # released


async def test_a_dead_holders_lease_runs_out_and_another_process_computes(
    holder: Callable[[float], subprocess.Popen[str]], redis_client: Redis, prefix: str
) -> None:
    process = holder(1.0)
    process.kill()
    process.wait()
    assert await redis_client.exists(f"{prefix}:lock:{KEY.path}")  # the dead holder's lease still runs
    calls = 0

    async def compute() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"text": "computed after the lease ran out"}

    async with local_cache(redis_client, prefix, lease_s=1.0) as cache:
        value, hit = await cache.get_or_compute(KEY, compute)
    assert (value, hit, calls) == ({"text": "computed after the lease ran out"}, False, 1)


async def test_a_live_holder_is_renewed_and_waiting_for_it_is_bounded(
    holder: Callable[[float], subprocess.Popen[str]], redis_client: Redis, prefix: str
) -> None:
    holder(0.6)
    await asyncio.sleep(1.0)  # longer than the lease: only renewals keep the lock
    assert await redis_client.exists(f"{prefix}:lock:{KEY.path}")

    async def compute() -> dict[str, Any]:
        return {"text": "computed here"}

    async with local_cache(redis_client, prefix, wait_s=0.5) as cache:
        assert await cache.get_or_compute(KEY, compute) == ({"text": "computed here"}, False)


async def test_a_waiter_takes_over_when_the_leader_is_cancelled() -> None:
    flight = SingleFlight()
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return f"value {calls}"

    async def nothing() -> None:
        return None

    leader = asyncio.ensure_future(flight.run("k", slow, nothing))
    await asyncio.sleep(0.01)
    waiter = asyncio.ensure_future(flight.run("k", slow, nothing))
    await asyncio.sleep(0.01)
    leader.cancel()
    assert await waiter == ("value 2", False)
    with pytest.raises(asyncio.CancelledError):
        await leader



@pytest.mark.timeout(60)
async def test_a_holder_ends_when_its_lease_renewal_absorbs_the_cancellation(
    redis_client: Redis, prefix: str
) -> None:
    """Each computation ends just after a renewal of its lease went out. On Python 3.11, redis-py sends a command
    under ``asyncio.wait_for``, which returns the command's result instead of raising when a cancellation meets a
    finished send; the renewal task, cancelled then, did not stop, kept the lock alive and its holder waiting for it
    forever (a products run hung at its last job). Each holder now ends, its lock released."""
    lease_s = 0.15
    flight = SingleFlight(redis_client, prefix=f"{prefix}:lock:", lease_s=lease_s, wait_s=5.0)
    rng = random.Random(7)

    async def compute() -> str:
        await asyncio.sleep(lease_s / 3 + rng.uniform(0, 300e-6))  # the first renewal's moment
        return "computed"

    async def nothing() -> None:
        return None

    async with asyncio.timeout(30):
        for n in range(40):
            assert await flight.run(f"k{n}", compute, nothing) == ("computed", False)
    assert not [key async for key in redis_client.scan_iter(match=f"{prefix}:lock:*")]
