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
Upstreams: 250 ms latency; the throughput run's has TPM 200,000.

The 20,000-product case (``--scale``; the sample catalog copied 20 times under new ids and names), through
``contentmill products`` as a user runs it:
- throughput as a fraction of the upstream's TPM ceiling (3,000,000) with the batches in the flow's process,
  and on a local Dask cluster of 1 and of 2 worker processes (``--workers``);
- the flow process's peak RSS for 20,000 products against 2,000 (the catalog is read as a stream and the rows
  kept in the journal, so it should stay flat).
Usage: ``python bench/products.py [CATALOG] [--scale]`` (``--scale``: only the 20,000-product case).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
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
SCALE = 20_000
SCALE_SMALL = 2_000
SCALE_TPM = 3_000_000
SCALE_LATENCY_MS = 100
ONE_MODEL = {"tiers": {tier: {"model": "openai:gpt-4o-mini", "fallbacks": []}
                       for tier in ("light", "standard", "premium")}}


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


def tpm_fill(settings: Any, tpm: int) -> dict[str, Any]:
    """Tokens charged per minute between a run's first and last call, as a share of ``tpm`` (the bucket starts
    full: a minute's worth may go at once, so that much is taken off), from the run's ledger."""
    from contentmill.ledger import LedgerStore, settings_url

    with LedgerStore(settings_url(settings)) as store:
        calls = [c for c in store.calls() if c.outcome == "ok"]
    charged = sum(c.estimate.input_tokens + c.estimate.output_tokens for c in calls)
    used = sum(c.usage.input_tokens + c.usage.output_tokens for c in calls)
    first_at = min(c.ts for c in calls).timestamp() - min(c.latency_s for c in calls)
    minutes = (max(c.ts for c in calls).timestamp() - first_at) / 60
    return {"value": round((charged - tpm) / (minutes * tpm), 4), "charged_tokens": charged, "used_tokens": used,
            "useful_share": round(used / charged, 4), "minutes": round(minutes, 3)}


def scaled_catalog(source: Path, target: Path, count: int) -> Path:
    """``count`` products from the sample catalog's rows, each copy under a new id and name."""
    with source.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for n in range(count):
            row = dict(rows[n % len(rows)])
            copy = n // len(rows)
            row["Uniq Id"] = f"{row['Uniq Id']}-{copy}"
            row["Product Name"] = f"{row['Product Name']} (edition {copy + 1})"
            writer.writerow(row)
    return target


def run_cli(catalog: Path, out: Path, env: dict[str, str], *extra: str) -> tuple[dict[str, Any], float]:
    """``contentmill products`` in a process of its own: its summary and the flow process's peak RSS in MiB."""
    import psutil

    command = [str(Path(sys.executable).with_name("contentmill")), "products", str(catalog), "--out", str(out),
               "--no-graph", "--json", *extra]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    watched = psutil.Process(process.pid)
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.1):
            try:
                peak = max(peak, watched.memory_info().rss)
            except psutil.NoSuchProcess:
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = process.communicate()
    done.set()
    watcher.join()
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(stdout)
    return summary, peak / 2**20


def scale(catalog: Path, work: Path) -> None:
    """The 20,000-product case: TPM fill inline and on 1 and 2 Dask workers; peak RSS against catalog size."""
    from prefect.server.api.server import SubprocessASGIServer

    command = "python bench/products.py --scale"
    big = scaled_catalog(catalog, work / "scale-20k.csv", SCALE)
    small = scaled_catalog(catalog, work / "scale-2k.csv", SCALE_SMALL)
    models = work / "scale-models.yaml"
    models.write_text(f"models:\n  openai:gpt-4o-mini: {{tpm: {SCALE_TPM}, rpm: 1000000}}\n", encoding="utf-8")
    config = work / "scale-config.json"
    config.write_text(json.dumps(ONE_MODEL), encoding="utf-8")
    api = SubprocessASGIServer()  # one Prefect API for every run (and every Dask worker)
    api.start()
    try:
        fills: dict[str, dict[str, Any]] = {}
        rss: dict[int, float] = {}
        for name, extra in (("inline", ()), ("workers_1", ("--workers", "1")), ("workers_2", ("--workers", "2"))):
            with start_upstream(latency_ms=SCALE_LATENCY_MS, tpm=SCALE_TPM) as limited:
                use(limited, work / f"scale-{name}", CONTENTMILL_CATALOG_FILE=str(models))
                env = {**os.environ, "PREFECT_API_URL": api.api_url}
                summary, peak = run_cli(big, work / f"scale-{name}.jsonl", env, "--config", str(config), *extra)
                fill = tpm_fill(load_settings(), SCALE_TPM)
                fills[name] = {**fill, "upstream_429": limited.stats()["rejected_429"], "done": summary["done"],
                               "lost_jobs": summary["lost_jobs"], "peak_rss_mib": round(peak, 1)}
            if name == "inline":
                rss[SCALE] = peak
        with start_upstream(latency_ms=SCALE_LATENCY_MS, tpm=SCALE_TPM) as limited:
            use(limited, work / "scale-small", CONTENTMILL_CATALOG_FILE=str(models))
            _summary, rss[SCALE_SMALL] = run_cli(small, work / "scale-small.jsonl",
                                                 {**os.environ, "PREFECT_API_URL": api.api_url},
                                                 "--config", str(config))
    finally:
        api.stop()
    for name, fill in fills.items():
        emit(figure=f"tpm_fill_{SCALE}_{name}", value=fill.pop("value"),
             baseline=f"upstream TPM ceiling {SCALE_TPM} (after its initial full bucket)", products=SCALE, **fill,
             command=command)
    emit(figure="tpm_fill_2_workers_vs_1", value=round(fills["workers_2"]["charged_tokens"] / fills["workers_2"]
                                                       ["minutes"] / (fills["workers_1"]["charged_tokens"]
                                                                      / fills["workers_1"]["minutes"]), 3),
         baseline="the same run on 1 Dask worker", command=command)
    emit(figure="peak_rss_20k_vs_2k", value=round(rss[SCALE] / rss[SCALE_SMALL], 3), target="about 1 (flat)",
         peak_rss_mib={str(k): round(v, 1) for k, v in rss.items()}, baseline=f"the same run on {SCALE_SMALL} products",
         command=command)


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--scale"]
    catalog = Path(args[0]) if args else CATALOG
    if not catalog.exists():
        sys.exit(f"no catalog at {catalog}: pass the path of amazon-products-1k.csv")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    work = Path(tempfile.mkdtemp(prefix="bench-products-"))
    if "--scale" in sys.argv[1:]:
        scale(catalog, work)
        return
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
    fill = tpm_fill(load_settings(), TPM)
    emit(figure="tpm_fill", value=fill.pop("value"), target=">= 0.90",
         baseline=f"upstream TPM ceiling {TPM} (after its initial full bucket)", **fill,
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
         jobs=quick["jobs"], wall_s=round(quick["wall_s"], 2),
         without_graph_ms=round(1000 * bare["wall_s"] / bare["items"], 2), command=command)
    scale(catalog, work)


if __name__ == "__main__":
    main()
