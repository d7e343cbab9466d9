"""One product-descriptions run: the resources it holds (the flow's gateway, the knowledge graph, the journal),
its three parts wired together (``planning``: what to describe and in which jobs; ``describing``: one job;
``scheduling``: how many jobs at once), and the output and summary at the end.

The run reads the catalog as a stream and keeps its rows in the journal, not in memory: the output is written
at the end by reading the catalog once more, in its order, each product's row from the journal.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contentmill.errors import ConfigError
from contentmill.gateway import Gateway
from contentmill.knowledge_graph import KnowledgeGraph
from contentmill.products.aimd import Aimd
from contentmill.products.catalog import Product, RowError, catalog_digest, iter_catalog
from contentmill.products.config import ProductsConfig
from contentmill.products.describing import sharing
from contentmill.products.journal import RunJournal
from contentmill.products.output import Row, Totals, cost_table, write_errors, write_rows
from contentmill.products.planning import Packer, Planner
from contentmill.products.prompts import TEMPLATE_VERSION
from contentmill.products.recording import Recorder
from contentmill.products.routed import routed_config
from contentmill.products.scheduling import Dispatch, RunStats, Scheduler
from contentmill.settings import Settings

FLOW_TAG = "product-descriptions"
Progress = Callable[[int, int], Awaitable[None]]  # (products with a row, products in the catalog)


@dataclass
class Summary:
    items: int
    done: int
    failed: int
    cached: int
    reused: int
    cost_usd: float
    tokens: int
    by_tier: dict[str, dict[str, Any]]
    by_category: dict[str, dict[str, Any]]
    out: str
    errors_out: str | None
    row_errors: int
    calls: int
    jobs: int
    rate_limited: int
    lost_jobs: int
    concurrency: dict[str, float]
    seconds: float
    upstream_s: float
    resumed: int
    routes: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_key(digest: str, config: ProductsConfig, limit: int | None) -> str:
    text = json.dumps([digest, config.digest(), limit, TEMPLATE_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def journal_path(settings: Settings, catalog: Path, config: ProductsConfig, limit: int | None) -> Path:
    """Where the run of ``catalog`` with ``config`` keeps its journal (the same path for a rerun that resumes)."""
    return settings.data_dir / "products" / "runs" / f"{run_key(catalog_digest(catalog), config, limit)}.jsonl"


def count_products(catalog: Path, config: ProductsConfig, limit: int | None) -> int:
    return sum(isinstance(found, Product) for found in iter_catalog(catalog, config.columns, limit))


class ProductRun:
    def __init__(self, settings: Settings, config: ProductsConfig, catalog_path: Path, *, out: Path | None = None,
                 limit: int | None = None, use_graph: bool = True, tags: dict[str, str] | None = None) -> None:
        self.settings, self.config, self.limit, self.catalog = settings, config, limit, catalog_path
        path = journal_path(settings, catalog_path, config, limit)
        self.key = path.stem
        self.journal = RunJournal(path)
        self.out = out or settings.data_dir / "products" / f"{catalog_path.stem}-descriptions.jsonl"
        self.use_graph = use_graph
        self.tags = {"team": config.team, "flow": FLOW_TAG, **(tags or {})}
        self.gateway: Gateway | None = None
        self.routes: dict[str, str] = {}  # tier -> the router's decision id, when tiers are routed
        self.graph: KnowledgeGraph | None = None

    async def __aenter__(self) -> ProductRun:
        self.gateway = Gateway(self.settings)
        self.config, self.routes = await asyncio.to_thread(routed_config, self.gateway, self.settings, self.config,
                                                           self.tags)
        if self.use_graph:
            self.graph = await asyncio.to_thread(KnowledgeGraph.open, self.settings)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.gateway is not None:
            await self.gateway.aclose()
        if self.graph is not None:
            self.graph.close()

    @property
    def gw(self) -> Gateway:
        if self.gateway is None:
            raise ConfigError("the run is not open: use `async with ProductRun(...)`")
        return self.gateway

    async def run(self, dispatch: Dispatch, progress: Progress | None = None, *,
                  offline: Dispatch | None = None, per_task: int = 1) -> Summary:
        """Describe every product that needs it: through ``offline`` (the Batch API) first when given, then
        online, ``dispatch`` running each job of up to ``per_task`` requests; ``progress(finished, total)``
        after each job."""
        started = time.perf_counter()
        recorder = Recorder(self.journal, self.graph)
        planner = Planner(self.config, self.catalog, self.limit, recorder)
        packer = Packer(planner.works(), self.gw, self.config)
        packing = self.config.packing
        aimd = Aimd(limit=float(packing.start_concurrency), ceiling=float(packing.max_concurrency))
        scheduler = Scheduler(self.key, self.config, self.tags, packer, planner.followers, recorder, aimd, per_task)
        report = None
        if progress is not None:
            total = await asyncio.to_thread(count_products, self.catalog, self.config, self.limit)

            async def report(done: int) -> None:
                await progress(done, total)

        with sharing(self.gw):
            stats = await scheduler.run(dispatch, report, offline=offline)
        await asyncio.to_thread(planner.settle_followers)
        return await asyncio.to_thread(self._summary, stats, planner.resumed, aimd, started)

    def _summary(self, stats: RunStats, resumed: int, aimd: Aimd, started: float) -> Summary:
        """Write the rows in catalog order (and the unusable rows beside them), then remove the journal."""
        totals = Totals()
        errors: list[RowError] = []

        def rows() -> Iterator[Row]:
            for found in iter_catalog(self.catalog, self.config.columns, self.limit):
                if isinstance(found, RowError):
                    errors.append(found)
                elif (data := self.journal.row(found.id)) is not None:
                    yield Row.from_dict(data)

        write_rows(self.out, totals.counting(rows()))
        errors_out = None
        if errors:
            errors_path = self.out.with_name(self.out.stem + ".errors.jsonl")
            write_errors(errors_path, (e.as_dict() for e in errors))
            errors_out = str(errors_path)
        self.journal.remove()
        tiers = totals.by_tier.values()
        cost = sum(t["cost_usd"] for t in tiers)
        by_tier, by_category = totals.rounded()
        trace = aimd.trace or [aimd.limit]
        return Summary(
            items=sum(t["items"] for t in tiers), done=sum(t["done"] for t in tiers),
            failed=sum(t["failed"] for t in tiers), cached=sum(t["cached"] for t in tiers),
            reused=sum(t["reused"] for t in tiers), cost_usd=round(cost, 8), tokens=sum(t["tokens"] for t in tiers),
            by_tier=by_tier, by_category=by_category, out=str(self.out), errors_out=errors_out,
            row_errors=len(errors), calls=stats.calls, jobs=stats.jobs, rate_limited=stats.rate_limited,
            lost_jobs=stats.lost,
            concurrency={"start": float(self.config.packing.start_concurrency), "min": min(trace),
                         "max": max(trace), "end": trace[-1], "decreases": float(aimd.decreases)},
            seconds=round(time.perf_counter() - started, 3), upstream_s=round(stats.upstream_s, 3),
            resumed=resumed, routes=dict(self.routes),
        )

    def table(self, summary: Summary) -> list[dict[str, Any]]:
        return cost_table(summary.by_tier, summary.by_category)
