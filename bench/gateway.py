"""Per-call overhead of the gateway against the same call without it, and against LiteLLM, in one run.

All clients call the fake upstream (0 ms latency) with the same small chat request, sequentially, in rounds
that alternate between the clients. Figures (one JSON line each): p50/p99 latency per client and the overhead
over a raw httpx call, and over the bare provider (the gateway's own cost: admission in the data directory's SQLite
file (the embedded default), in memory with the reservation journal, or Redis scripts; settlement, ledger row,
alert rules; with the cache on it also looks up and stores the answer).
Usage: ``python bench/gateway.py [CALLS_PER_ROUND] [ROUNDS]`` (needs Redis on 127.0.0.1:6379; LiteLLM optional).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import redis
from pydantic import SecretStr

from contentmill.gateway import Gateway
from contentmill.gateway.admission import MemoryAdmission
from contentmill.providers.openai_client import OpenAICompatClient
from contentmill.providers.openai_compat import OpenAICompatTextModel
from contentmill.requests import TextRequest
from contentmill.settings import load_settings
from contentmill.testing.harness import start_upstream

KEY = "sk-bench-gateway"
MODEL = "openai:gpt-4o-mini"
REDIS_URL = os.environ.get("CONTENTMILL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
Call = Callable[[int], Awaitable[object]]
counter = itertools.count()


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "gateway", **fields}), flush=True)


def request(i: int) -> TextRequest:
    return TextRequest.chat(f"Write a one-line tagline for ceramic mug number {i}.", max_tokens=16)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(call: Call, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        i = next(counter)
        started = time.perf_counter()
        await call(i)
        samples.append(time.perf_counter() - started)
    return samples


def litellm_clients(base_url: str) -> dict[str, Call]:
    """LiteLLM's acompletion and Router.acompletion, when LiteLLM is installed (``pip install litellm``)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm
    except ImportError:
        emit(figure="note", message="litellm is not installed: its figures are left out")
        return {}
    litellm.telemetry = False
    router = litellm.Router(model_list=[{
        "model_name": "mini", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": base_url, "api_key": KEY},
    }])

    async def acompletion(i: int) -> object:
        return await litellm.acompletion(model="openai/gpt-4o-mini", api_base=base_url, api_key=KEY,
                                         messages=request(i).as_messages(), max_tokens=16)

    async def routed(i: int) -> object:
        return await router.acompletion(model="mini", messages=request(i).as_messages(), max_tokens=16)

    return {"litellm_acompletion": acompletion, "litellm_router": routed}


async def main(base_url: str, calls: int, rounds: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="cm-bench-"))
    prefix = f"bench:{uuid.uuid4().hex}:"
    # Limits far above what the run asks, so every call is admitted at once and the figures are pure overhead.
    catalog = data / "catalog.yaml"
    catalog.write_text("models:\n  openai:gpt-4o-mini: {rpm: 10000000, tpm: 1000000000}\n")
    common = {"openai_base_url": base_url, "openai_api_key": SecretStr(KEY), "catalog_file": catalog}
    # The embedded default: admission in the data directory's SQLite file, shared by the machine's processes.
    in_process = Gateway(load_settings(data_dir=data / "sqlite", **common))
    # Admission in this process's memory (with the reservation journal): limits held by one process only.
    in_memory = Gateway(load_settings(data_dir=data / "mem", **common), admission=MemoryAdmission())
    cached = Gateway(load_settings(data_dir=data / "cache", **common))
    on_redis = Gateway(load_settings(data_dir=data / "redis", redis_url=REDIS_URL, redis_prefix=prefix, **common))
    bare = OpenAICompatTextModel(MODEL, OpenAICompatClient("openai", base_url, SecretStr(KEY)))
    url = base_url + "/chat/completions"
    headers = {"authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient() as raw_client:

        async def raw_httpx(i: int) -> object:
            body = {"model": "gpt-4o-mini", "messages": request(i).as_messages(), "max_tokens": 16}
            return (await raw_client.post(url, json=body, headers=headers)).json()

        clients: dict[str, Call] = {
            "raw_httpx": raw_httpx,
            "provider": lambda i: bare.complete(request(i)),
            "gateway_in_process": lambda i: in_process.generate(request(i), model=MODEL, cache=False),
            "gateway_in_process_memory": lambda i: in_memory.generate(request(i), model=MODEL, cache=False),
            "gateway_in_process_cache": lambda i: cached.generate(request(i), model=MODEL),
            "gateway_redis": lambda i: on_redis.generate(request(i), model=MODEL, cache=False),
            **litellm_clients(base_url),
        }
        for call in clients.values():
            await timed(call, 100)  # warm up
        samples: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(rounds):
            for name, call in clients.items():
                samples[name] += await timed(call, calls)
    for gateway in (in_process, in_memory, cached, on_redis):
        await gateway.aclose()
    await bare.aclose()
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()

    base = {q: percentile(samples["raw_httpx"], q) for q in (0.5, 0.99)}
    provider = {q: percentile(samples["provider"], q) for q in (0.5, 0.99)}
    for name, values in samples.items():
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        row: dict[str, Any] = {"figure": "per_call_latency", "client": name, "calls": len(values),
                               "p50_us": round(p50 * 1e6, 1), "p99_us": round(p99 * 1e6, 1),
                               "overhead_vs_raw_httpx_p50_us": round((p50 - base[0.5]) * 1e6, 1),
                               "overhead_vs_raw_httpx_p99_us": round((p99 - base[0.99]) * 1e6, 1),
                               "ratio_vs_raw_httpx_p50": round(p50 / base[0.5], 3)}
        if name.startswith("gateway"):
            row["overhead_vs_provider_p50_us"] = round((p50 - provider[0.5]) * 1e6, 1)
            row["overhead_vs_provider_p99_us"] = round((p99 - provider[0.99]) * 1e6, 1)
        emit(**row)


async def without_http(calls: int) -> None:
    """The gateway's own work with no network at all: the packaged fake model, bare and through the gateway."""
    from contentmill.catalog import builtin_catalog
    from contentmill.providers.fake import FakeTextModel

    catalog = builtin_catalog().merged({"models": {"fake:text": {
        "free": False, "input_per_mtok": 1.0, "output_per_mtok": 2.0, "rpm": 10**7, "tpm": 10**9}}}, "bench")
    fake = FakeTextModel(responses=["A short answer."])
    gateway = Gateway(load_settings(data_dir=Path(tempfile.mkdtemp(prefix="cm-bench-"))), catalog,
                      models={"fake:text": fake})
    requests = [request(i) for i in range(2 * calls)]
    for item in requests[:200]:
        await gateway.generate(item, model="fake:text", cache=False)
    started = time.perf_counter()
    for item in requests[:calls]:
        await fake.complete(item)
    bare = (time.perf_counter() - started) / calls
    started = time.perf_counter()
    for item in requests[calls:]:
        await gateway.generate(item, model="fake:text", cache=False)
    through = (time.perf_counter() - started) / calls
    await gateway.aclose()
    emit(figure="gateway_without_http", calls=calls, fake_model_us=round(bare * 1e6, 1),
         through_gateway_us=round(through * 1e6, 1), overhead_us=round((through - bare) * 1e6, 1))


if __name__ == "__main__":
    per_round = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    asyncio.run(without_http(3000))
    with start_upstream("--latency-ms", "0") as server:
        asyncio.run(main(server.base_url, per_round, rounds))
