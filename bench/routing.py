"""Routing decision time with warm statistics, next to the gateway's own per-call overhead, in one run.

No network: three priced variants of the packaged fake text model form a tier. The ledger is filled with CALLS call
records and quality scores across them, the router refreshes once (warm statistics), then:

- ``decision``: ``Router.choose`` per request (tier rule, memoized matrix ranking, health, a ``team=*`` budget);
- ``rank_cold``: the matrix ranking computed afresh (what a decision costs right after a refresh);
- ``refresh``: reading the window's statistics from the ledger (done every ``refresh_s``, off the request);
- ``gateway_overhead``: the fake model called bare and through the in-process gateway (cache off), as in
  ``bench/gateway.py``'s ``gateway_without_http``; the gateway with a fresh ``route`` tag per call; and
  ``router.generate`` over ``gateway.generate`` (choice, tag, decision row written by the batch writer).

Usage: ``python bench/routing.py [DECISIONS] [CALLS] [ROUNDS]``. One JSON line per figure.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from contentmill.catalog import Catalog, builtin_catalog
from contentmill.gateway import Gateway
from contentmill.ids import new_id
from contentmill.ledger import Budget, CallRecord, LedgerStore, settings_url
from contentmill.ledger.records import utcnow
from contentmill.ledger.schema import quality_scores
from contentmill.metering import Usage
from contentmill.providers.fake import FakeTextModel
from contentmill.requests import TextRequest
from contentmill.routing import Router, RoutingConfig
from contentmill.routing.matrix import rank
from contentmill.routing.router import decision_id
from contentmill.settings import load_settings

MODELS = ("fake:text", "fake:text-b", "fake:text-c")
CONFIG = RoutingConfig(tiers={"standard": MODELS, "light": MODELS[1:]}, tier_order=("standard", "light"),
                       refresh_s=3600)


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "routing", **fields}), flush=True)


def catalog() -> Catalog:
    entries = {name: {"modality": "text", "free": False, "input_per_mtok": 1.0 + i, "output_per_mtok": 2.0 + i,
                      "rpm": 10**7, "tpm": 10**9, "quality": 0.9 - 0.1 * i, "latency_s": 1.0 + i,
                      "languages": ["en"], "task_kinds": ["chat"]} for i, name in enumerate(MODELS)}
    return builtin_catalog().merged({"models": entries}, "bench")


def fill(store: LedgerStore, calls: int) -> None:
    rng = random.Random(7)
    now = utcnow()
    records = [CallRecord(model=rng.choice(MODELS), api_type="text", outcome="ok" if rng.random() > 0.03 else "error",
                          estimate=Usage(input_tokens=100, output_tokens=50, estimated=True),
                          usage=Usage(input_tokens=100, output_tokens=50), cost_usd=rng.uniform(1e-4, 1e-3),
                          latency_s=rng.lognormvariate(-1.0, 0.5), tags={"team": rng.choice(("shop", "ads"))},
                          ts=now - timedelta(seconds=rng.uniform(0, 3600))) for _ in range(calls)]
    store.write_calls(records)
    rows: list[dict[str, Any]] = [
        {"id": new_id(), "ts": now, "call_id": None, "model": rng.choice(MODELS), "template_version": None,
         "scorer": "rubric", "score": rng.uniform(0.6, 1.0), "tags": {}} for _ in range(calls // 10)]
    with store.transaction("write bench quality scores") as conn:
        conn.execute(quality_scores.insert(), rows)
    store.set_budget(Budget("team", "*", "day", limit_usd=1000.0))


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def decisions(router: Router, n: int) -> None:
    plans = [("chat", "en", tier, priority, {"team": team}) for tier in ("standard", "light")
             for priority in ("low", "normal", "high") for team in ("shop", "ads")]
    for plan in plans * 50:
        router.choose(*plan)  # warm: memoized rankings, budget spend read once per scope
    samples = []
    clock = time.perf_counter
    for i in range(n):
        plan = plans[i % len(plans)]
        started = clock()
        router.choose(*plan)
        samples.append(clock() - started)
    emit(figure="decision", decisions=n, mean_us=round(sum(samples) / n * 1e6, 2),
         p50_us=round(percentile(samples, 0.5) * 1e6, 2), p99_us=round(percentile(samples, 0.99) * 1e6, 2),
         target_us=50)
    stats = [router.matrix.stats[m] for m in MODELS]
    started = clock()
    for _ in range(n):
        rank(stats, CONFIG.weights, "chat", "en")
    emit(figure="rank_cold", rankings=n, mean_us=round((clock() - started) / n * 1e6, 2), candidates=len(stats))


async def gateway_figures(gateway: Gateway, router: Router, calls: int, rounds: int, decision_us: float) -> None:
    """Per-call time of four clients in alternating rounds (the machine is shared): the bare fake model, the
    gateway, the gateway with a fresh ``route`` tag per call (what the link to the decision costs there), and
    ``router.generate``. Each figure is the median of the rounds' means."""
    fake = FakeTextModel(responses=["A short answer."])
    counter = iter(range(10**9))

    def ask() -> TextRequest:
        return TextRequest.chat(f"Tagline for mug {next(counter)}.", max_tokens=16)

    clients: dict[str, Callable[[], Awaitable[object]]] = {
        "fake_model": lambda: fake.complete(ask()),
        "gateway": lambda: gateway.generate(ask(), model="fake:text", cache=False),
        "gateway_route_tag": lambda: gateway.generate(ask(), model="fake:text", cache=False,
                                                      tags={"route": decision_id()}),
        "router_generate": lambda: router.generate(gateway, ask(), tier="standard", cache=False),
    }
    means: dict[str, list[float]] = {name: [] for name in clients}
    for round_ in range(rounds + 1):
        for name, call in clients.items():
            started = time.perf_counter()
            for _ in range(calls):
                await call()
            if round_:  # the first round warms up
                means[name].append((time.perf_counter() - started) / calls)
    us = {name: statistics.median(values) * 1e6 for name, values in means.items()}
    overhead = us["gateway"] - us["fake_model"]
    emit(figure="gateway_overhead", calls_per_round=calls, rounds=rounds,
         **{f"{name}_us": round(value, 1) for name, value in us.items()},
         gateway_overhead_us=round(overhead, 1), route_tag_us=round(us["gateway_route_tag"] - us["gateway"], 1),
         routing_added_us=round(us["router_generate"] - us["gateway"], 1), decision_us=round(decision_us, 2),
         decision_over_gateway_overhead=round(decision_us / overhead, 4),
         routing_added_over_gateway_overhead=round((us["router_generate"] - us["gateway"]) / overhead, 3))


async def main(n: int, calls: int, rounds: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="cm-bench-routing-"))
    settings = load_settings(data_dir=data, monitor_interval_s=0)
    with LedgerStore(settings_url(settings)) as store:
        fill(store, calls)
    models = {name: FakeTextModel(responses=["A short answer."]) for name in MODELS}
    async with Gateway(settings, catalog(), models=models) as gateway:
        router = Router.for_gateway(gateway, CONFIG)
        started = time.perf_counter()
        router.refresh()
        emit(figure="refresh", calls_in_window=calls, ms=round((time.perf_counter() - started) * 1e3, 1))
        decisions(router, n)
        samples = []
        for _ in range(n):
            plan = ("chat", "en", "standard", "normal", {"team": "shop"})
            started = time.perf_counter()
            router.choose(*plan)
            samples.append(time.perf_counter() - started)
        await gateway_figures(gateway, router, 500, rounds, percentile(samples, 0.5) * 1e6)
        router.close()


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    ledger_calls = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    asyncio.run(main(count, ledger_calls, rounds))
