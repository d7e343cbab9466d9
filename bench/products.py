"""The product-descriptions flow on the 1,000-product sample catalog against the fake upstream, in one run.

Figures (one JSON line each), every one a ratio to a baseline measured in the same run:
- cost of a first run against a naive run (one request per product, the same tier models, no packing, cache or
  dedupe), and against naive all-premium (every product on the premium model);
- cost of a second run of the same catalog against the first;
- cost of a run after 10% of the products changed (their price) against the first;
- throughput as a fraction of the upstream's TPM ceiling, with the 429s the upstream answered (all on one model
  whose catalog TPM is the upstream's, so the gateway's admission is what keeps it under);
- orchestration overhead per item: the flow's wall time per product against an upstream that answers at once
  (packing, token counting, checks, Prefect task runs, graph and ledger writes, embedding each description for
  search), next to the upstream time per product of the realistic run; and the same without the graph.
Upstreams: 250 ms latency; the throughput run's has TPM 200,000. Usage: ``python bench/products.py [CATALOG]``.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from contentmill.gateway import Gateway
from contentmill.products.catalog import parse_price, read_catalog
from contentmill.products.config import ProductsConfig
from contentmill.products.prompts import TEMPLATE_VERSION, Item, build_request
from contentmill.products.tiers import assign
from contentmill.settings import load_settings
from contentmill.testing.harness import Upstream, start_upstream

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO.parent / "shared" / "data" / "amazon-products-1k.csv"
KEY = "sk-bench-products-0123456789"
LATENCY_MS = 250
TPM = 200_000
NAIVE_CONCURRENCY = 32
MODELS = ("openai:gpt-4o", "openai:gpt-4o-mini", "openai:gpt-4.1-mini")


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "products", **fields}), flush=True)


def use(upstream: Upstream, data_dir: Path, **extra: str) -> None:
    """Point this process's settings at an upstream and a fresh data directory."""
    for name in [n for n in os.environ if n.startswith("CONTENTMILL_")]:
        del os.environ[name]
    os.environ.update(OPENAI_BASE_URL=upstream.base_url, OPENAI_API_KEY=KEY, CONTENTMILL_DATA_DIR=str(data_dir),
                      CONTENTMILL_MONITOR_INTERVAL_S="0", CONTENTMILL_ADMISSION_WAIT_S="300", **extra)


def run_flow(catalog: Path, out: Path, config: dict[str, Any] | None = None, use_graph: bool = True
             ) -> dict[str, Any]:
    from contentmill.flows.product_descriptions import product_descriptions

    started = time.perf_counter()
    summary: dict[str, Any] = asyncio.run(product_descriptions(catalog=str(catalog), out=str(out), config=config,
                                                               use_graph=use_graph))
    summary["wall_s"] = time.perf_counter() - started
    return summary


async def naive(catalog: Path, premium_only: bool) -> dict[str, float]:
    """One request per product with the same prompt, models and checks-free path; no packing, cache or dedupe."""
    config = ProductsConfig()
    products = read_catalog(catalog, config.columns).products
    semaphore = asyncio.Semaphore(NAIVE_CONCURRENCY)
    settings = load_settings(cache_enabled=False)
    async with Gateway(settings) as gateway:

        async def one(index: int) -> float:
            product = products[index]
            models = config.models("premium" if premium_only else assign(product, config))
            request = build_request([Item(product.id, product.fields(config.packing))], config.language,
                                    models.words)
            async with semaphore:
                gen = await gateway.generate(request, model=models.model, cache=False, tags={"team": "naive"},
                                             template_version=TEMPLATE_VERSION)
            return gen.cost_usd

        started = time.perf_counter()
        costs = await asyncio.gather(*(one(i) for i in range(len(products))))
    return {"cost_usd": sum(costs), "wall_s": time.perf_counter() - started, "requests": float(len(costs))}


def changed_copy(catalog: Path, target: Path, share: float) -> int:
    """The catalog with the price of every ``1/share``-th product raised by a dollar."""
    with catalog.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    step = round(1 / share)
    changed = 0
    for index, row in enumerate(rows):
        if index % step == 0:
            row["Selling Price"] = f"${(parse_price(row['Selling Price']) or 8.99) + 1:.2f}"
            changed += 1
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return changed


def main() -> None:
    catalog = Path(sys.argv[1]) if len(sys.argv) > 1 else CATALOG
    if not catalog.exists():
        sys.exit(f"no catalog at {catalog}: pass the path of amazon-products-1k.csv")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    work = Path(tempfile.mkdtemp(prefix="bench-products-"))
    command = "python bench/products.py"

    unlimited = work / "unlimited.yaml"  # the cost runs' upstream has no limits: neither has the gateway
    unlimited.write_text("models:\n" + "".join(f"  {m}: {{tpm: 100000000, rpm: 1000000}}\n" for m in MODELS),
                         encoding="utf-8")
    with start_upstream(latency_ms=LATENCY_MS) as upstream:
        use(upstream, work / "naive", CONTENTMILL_CATALOG_FILE=str(unlimited))
        plain = asyncio.run(naive(catalog, premium_only=False))
        premium = asyncio.run(naive(catalog, premium_only=True))
        use(upstream, work / "runs", CONTENTMILL_CATALOG_FILE=str(unlimited))
        upstream.reset()
        first = run_flow(catalog, work / "first.jsonl")
        upstream_first = upstream.stats()
        second = run_flow(catalog, work / "second.jsonl")
        changed_catalog = work / "changed.csv"
        changed = changed_copy(catalog, changed_catalog, 0.10)
        third = run_flow(changed_catalog, work / "third.jsonl")
    emit(figure="cost_vs_naive", value=round(first["cost_usd"] / plain["cost_usd"], 4), target="<= 0.60",
         cost_usd=first["cost_usd"], baseline="naive: one request per product, same models",
         baseline_cost_usd=round(plain["cost_usd"], 6), requests=upstream_first["requests"],
         baseline_requests=plain["requests"], items=first["items"], failed=first["failed"], command=command)
    emit(figure="cost_vs_naive_all_premium", value=round(first["cost_usd"] / premium["cost_usd"], 4),
         cost_usd=first["cost_usd"], baseline="naive, every product on the premium model",
         baseline_cost_usd=round(premium["cost_usd"], 6), command=command)
    emit(figure="second_run_cost_vs_first", value=round(second["cost_usd"] / first["cost_usd"], 6),
         target="<= 0.01", cost_usd=second["cost_usd"], baseline="the first run", calls=second["calls"],
         wall_s=round(second["wall_s"], 2), command=command)
    emit(figure="changed_10pct_cost_vs_first", value=round(third["cost_usd"] / first["cost_usd"], 4),
         target="<= 0.12", changed=changed, regenerated=third["items"] - third["cached"], cost_usd=third["cost_usd"],
         baseline="the first run", command=command)

    catalog_file = work / "models.yaml"
    catalog_file.write_text(f"models:\n  openai:gpt-4o-mini: {{tpm: {TPM}, rpm: 100000}}\n", encoding="utf-8")
    one_model = {"tiers": {tier: {"model": "openai:gpt-4o-mini", "fallbacks": []}
                           for tier in ("light", "standard", "premium")}}
    with start_upstream(latency_ms=LATENCY_MS, tpm=TPM) as limited:
        use(limited, work / "tpm", CONTENTMILL_CATALOG_FILE=str(catalog_file))
        run = run_flow(catalog, work / "tpm.jsonl", one_model)
        stats = limited.stats()
    from contentmill.ledger import LedgerStore, settings_url

    with LedgerStore(settings_url(load_settings())) as store:
        calls = [c for c in store.calls() if c.outcome == "ok"]
    charged = sum(c.estimate.input_tokens + c.estimate.output_tokens for c in calls)
    used = sum(c.usage.input_tokens + c.usage.output_tokens for c in calls)
    first_at = min(c.ts for c in calls).timestamp() - min(c.latency_s for c in calls)
    last_at = max(c.ts for c in calls).timestamp()
    minutes = (last_at - first_at) / 60
    burst = TPM  # the bucket starts full: a minute's worth may go at once
    emit(figure="tpm_fill", value=round((charged - burst) / (minutes * TPM), 4), target=">= 0.90",
         baseline=f"upstream TPM ceiling {TPM} (after its initial full bucket)", charged_tokens=charged,
         used_tokens=used, useful_share=round(used / charged, 4), minutes=round(minutes, 3),
         upstream_429=stats["rejected_429"], flow_rate_limited=run["rate_limited"], done=run["done"],
         command=command)

    with start_upstream(latency_ms=0) as instant:
        use(instant, work / "instant", CONTENTMILL_CATALOG_FILE=str(unlimited))
        quick = run_flow(catalog, work / "instant.jsonl")
        use(instant, work / "instant-no-graph", CONTENTMILL_CATALOG_FILE=str(unlimited))
        bare = run_flow(catalog, work / "instant-no-graph.jsonl", use_graph=False)
    per_item_ms = 1000 * quick["wall_s"] / quick["items"]
    upstream_per_item_ms = 1000 * first["upstream_s"] / first["items"]
    emit(figure="orchestration_overhead_per_item_ms", value=round(per_item_ms, 2),
         baseline="upstream time per item of the realistic first run (sum of call latencies / items)",
         baseline_value=round(upstream_per_item_ms, 2), ratio=round(per_item_ms / upstream_per_item_ms, 3),
         batches=quick["batches"], wall_s=round(quick["wall_s"], 2),
         without_graph_ms=round(1000 * bare["wall_s"] / bare["items"], 2), command=command)


if __name__ == "__main__":
    main()
