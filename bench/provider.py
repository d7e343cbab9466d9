"""The OpenAI-compatible provider against raw HTTP clients, on the same fake upstream in the same run.

Figures (one JSON line each):
- per-call overhead: median latency of sequential calls through the provider vs a raw aiohttp call (ratio);
- throughput with 64 concurrent calls: provider (its lean HTTP/1.1 client, providers/http1.py) vs raw aiohttp (ratio),
  with httpx's default transport alongside for reference.
Rounds alternate between the clients so machine noise hits them alike; a throughput ratio is the median of
the per-round ratios. Usage: ``python bench/provider.py [CALLS_PER_ROUND] [ROUNDS]``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
from pydantic import SecretStr

from contentmill.providers.openai_client import OpenAICompatClient
from contentmill.providers.openai_compat import OpenAICompatTextModel
from contentmill.requests import TextRequest
from contentmill.testing.harness import start_upstream

KEY = "sk-bench"
REQUEST = TextRequest.chat("Write a one-line tagline for a ceramic mug.", max_tokens=16)
PAYLOAD = {"model": "gpt-4o-mini", "messages": REQUEST.as_messages(), "max_tokens": 16, "temperature": 0.0}
HEADERS = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
Call = Callable[[], Awaitable[object]]


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "provider", **fields}), flush=True)


async def sequential_latencies(call: Call, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


async def throughput(call: Call, total: int, concurrency: int) -> float:
    queue = iter(range(total))

    async def worker() -> None:
        for _ in queue:
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - started)


async def main(base_url: str, calls: int, rounds: int) -> None:
    url = base_url + "/chat/completions"
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session, \
            httpx.AsyncClient(limits=httpx.Limits(max_connections=256, max_keepalive_connections=256)) as plain:

        # A raw call still serializes its request and parses its answer, as any client must.
        async def raw_aiohttp() -> object:
            async with session.post(url, data=json.dumps(PAYLOAD).encode(), headers=HEADERS) as response:
                return json.loads(await response.read())

        async def raw_httpx() -> object:
            return json.loads((await plain.post(url, content=json.dumps(PAYLOAD).encode(), headers=HEADERS)).content)

        provider = OpenAICompatTextModel("openai:gpt-4o-mini",
                                         OpenAICompatClient("openai", base_url, SecretStr(KEY)))

        async def ours() -> object:
            return await provider.complete(REQUEST)

        clients: dict[str, Call] = {"raw_aiohttp": raw_aiohttp, "provider": ours, "raw_httpx_default": raw_httpx}
        for call in clients.values():  # warm up connections and code paths
            await throughput(call, 200, 64)

        latency: dict[str, list[float]] = {name: [] for name in clients}
        rate: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(rounds):
            for name, call in clients.items():
                latency[name] += await sequential_latencies(call, calls // 4)
                rate[name].append(await throughput(call, calls, 64))
        await provider.aclose()

    base_p50 = statistics.median(latency["raw_aiohttp"])
    for name in ("provider", "raw_httpx_default"):
        p50 = statistics.median(latency[name])
        emit(figure="per_call_latency", client=name, baseline="raw_aiohttp", p50_us=round(p50 * 1e6, 1),
             baseline_p50_us=round(base_p50 * 1e6, 1), overhead_us=round((p50 - base_p50) * 1e6, 1),
             ratio=round(p50 / base_p50, 3))
    base_rate = statistics.median(rate["raw_aiohttp"])
    for name in ("provider", "raw_httpx_default"):
        # The ratio of each round (same moment, same machine load), then the median over rounds.
        ratios = [ours / base for ours, base in zip(rate[name], rate["raw_aiohttp"], strict=True)]
        emit(figure="throughput_64_concurrent", client=name, baseline="raw_aiohttp",
             calls_per_s=round(statistics.median(rate[name])), baseline_calls_per_s=round(base_rate),
             ratio=round(statistics.median(ratios), 3), rounds=len(ratios))

if __name__ == "__main__":
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 9
    with start_upstream("--latency-ms", "0") as server:
        asyncio.run(main(server.base_url, calls, rounds))
