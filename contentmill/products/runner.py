"""One product-descriptions run: plan what needs a model, pack it into batches, describe each batch, check each
description, and record what was made.

Planning costs nothing: products in this run's journal (a killed run being resumed) keep their row, a product
whose current output in the knowledge graph was made from the same field values is served from it, and a
product with the same fields as another (a variant: same name, brand, price, text under another id) reuses
that product's output. The rest are packed, tier by tier, into requests sized by ``packing.budget``; how many
run at once follows ``Aimd``. A batch is answered item by item: an item that fails its checks in a packed
answer is asked again alone, and one that fails alone is asked one tier up. Each finished batch is written to
the graph (a new version supersedes the output it replaces) and to the journal before the next is counted.

``describe`` is what one Prefect task runs; the run itself is looked up by id (``lookup``) so a task only
receives plain data.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contentmill.errors import ConfigError, ContentmillError, ProviderRateLimited, RateLimited
from contentmill.gateway import Gateway, Generation
from contentmill.knowledge_graph import KnowledgeGraph
from contentmill.metering import Usage
from contentmill.products.aimd import Aimd
from contentmill.products.catalog import Catalog, Product, read_catalog
from contentmill.products.checks import failed, run_checks
from contentmill.products.config import ProductsConfig, Tier
from contentmill.products.journal import RunJournal
from contentmill.products.output import Row, cost_table, totals, write_errors, write_rows
from contentmill.products.packing import Budget, budget, context_tokens, take
from contentmill.products.prompts import (
    TEMPLATE_VERSION,
    Item,
    build_request,
    item_tokens,
    output_budget,
    overhead_tokens,
    parse_answer,
)
from contentmill.products.reuse import NewOutput, Priors, changed_fields, priors, record
from contentmill.products.routed import routed_config
from contentmill.products.tiers import assign, next_tier
from contentmill.settings import Settings

FLOW_TAG = "product-descriptions"
DEFAULT_RETRY_AFTER_S = 1.0


@dataclass
class Work:
    """A product on its way to a description, with what it has cost so far."""

    product: Product
    tier: Tier
    assigned: Tier
    fields: dict[str, str]
    language: str
    variant: str
    old_output: str | None = None
    changed: list[str] | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    cached: bool = True  # every call it took was served from the gateway's cache
    attempts: list[str] = field(default_factory=list)
    checks: dict[str, str] = field(default_factory=dict)
    _tokens: int | None = None

    @property
    def id(self) -> str:
        return self.product.id

    def item(self) -> Item:
        return Item(self.id, self.fields)

    def tokens(self, encoding: str) -> int:
        """Tokens the product adds to a prompt (counted once)."""
        if self._tokens is None:
            self._tokens = item_tokens(self.item(), encoding)
        return self._tokens

    def row(self, *, model: str | None, description: str | None, error: str | None = None) -> Row:
        return Row(id=self.id, name=self.product.name, category=self.product.top_category, tier=self.tier,
                   assigned_tier=self.assigned, model=model, description=description, usage=self.usage.as_dict(),
                   cost_usd=self.cost_usd, cached=self.cached and self.cost_usd == 0, checks=self.checks,
                   error=error, attempts=self.attempts, changed=self.changed)


@dataclass
class BatchResult:
    rows: list[Row] = field(default_factory=list)
    requeue: list[Work] = field(default_factory=list)  # rate-limited: to be sent again later
    rate_limited: bool = False
    retry_after: float | None = None
    latency_s: float = 0.0  # wall time of the batch
    upstream_s: float = 0.0  # time spent in provider calls (0 for cache hits)
    calls: int = 0
    congested: bool = False  # a call needed retries (429s or errors the gateway absorbed)


class _Deferred(Exception):
    def __init__(self, retry_after: float | None) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after


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
    batches: int
    rate_limited: int
    concurrency: dict[str, float]
    seconds: float
    upstream_s: float
    resumed: int
    routes: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def variant_key(fields: dict[str, str], language: str) -> str:
    text = json.dumps([TEMPLATE_VERSION, language, sorted(fields.items())], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def run_key(catalog: Catalog, config: ProductsConfig, limit: int | None) -> str:
    text = json.dumps([catalog.digest, config.digest(), limit, TEMPLATE_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _split(total: Usage, parts: int) -> list[Usage]:
    """Usage shared out between the items of one call (integer tokens, the remainder to the first)."""
    def share(value: int, index: int) -> int:
        return value // parts + (1 if index < value % parts else 0)

    return [Usage(input_tokens=share(total.input_tokens, i), output_tokens=share(total.output_tokens, i),
                  cached_input_tokens=share(total.cached_input_tokens, i)) for i in range(parts)]


_RUNS: dict[str, ProductRun] = {}
_LISTENERS: list[Callable[[int, int], None]] = []


@contextmanager
def listening(listener: Callable[[int, int], None]) -> Iterator[None]:
    """Call ``listener(finished, total)`` after each batch of any run in this process (the CLI's progress bar)."""
    _LISTENERS.append(listener)
    try:
        yield
    finally:
        _LISTENERS.remove(listener)


def lookup(run_id: str) -> ProductRun:
    run = _RUNS.get(run_id)
    if run is None:
        raise ConfigError(f"no product-descriptions run {run_id} in this process: batches run in the flow's process")
    return run


Dispatch = Callable[[str, str, list[Work]], Awaitable[BatchResult]]  # (run id, batch id, the batch)
OfflineDispatch = Callable[[str, str, list[list[Work]]], Awaitable[BatchResult]]
Progress = Callable[[int, int], Awaitable[None]]


class ProductRun:
    def __init__(self, settings: Settings, config: ProductsConfig, catalog_path: Path, *, out: Path | None = None,
                 limit: int | None = None, use_graph: bool = True, tags: dict[str, str] | None = None) -> None:
        self.settings, self.config, self.limit = settings, config, limit
        self.catalog = read_catalog(catalog_path, config.columns, limit)
        self.key = run_key(self.catalog, config, limit)
        base = settings.data_dir / "products"
        self.out = out or base / f"{catalog_path.stem}-descriptions.jsonl"
        self.journal = RunJournal(base / "runs" / f"{self.key}.jsonl")
        self.use_graph = use_graph
        self.tags = {"team": config.team, "flow": FLOW_TAG, **(tags or {})}
        self.gateway: Gateway | None = None
        self.routes: dict[str, str] = {}  # tier -> the router's decision id, when tiers are routed
        self.graph: KnowledgeGraph | None = None
        self.aimd = Aimd(limit=float(config.packing.start_concurrency), ceiling=float(config.packing.max_concurrency))
        self.rows: dict[str, Row] = {}
        self.followers: dict[str, list[Work]] = {}  # leader id -> variants waiting for its description
        self.works: dict[str, Work] = {}  # every product planned in this run, by id
        self._graph_lock = asyncio.Lock()
        self.staged: dict[str, Any] = {}  # batch id -> its products, while a task runs it
        self._batch_ids = itertools.count(1)
        self.stats = {"calls": 0, "batches": 0, "rate_limited": 0, "upstream_s": 0.0, "resumed": 0}

    # -- resources -------------------------------------------------------------------------------------

    async def __aenter__(self) -> ProductRun:
        self.gateway = Gateway(self.settings)
        self.config, self.routes = await asyncio.to_thread(routed_config, self.gateway, self.settings, self.config,
                                                           self.tags)
        if self.use_graph:
            self.graph = await asyncio.to_thread(KnowledgeGraph.open, self.settings)
        _RUNS[self.key] = self
        return self

    async def __aexit__(self, *exc: object) -> None:
        _RUNS.pop(self.key, None)
        if self.gateway is not None:
            await self.gateway.aclose()
        if self.graph is not None:
            self.graph.close()

    @property
    def gw(self) -> Gateway:
        if self.gateway is None:
            raise ConfigError("the run is not open: use `async with ProductRun(...)`")
        return self.gateway

    # -- planning --------------------------------------------------------------------------------------

    def plan(self) -> list[Work]:
        """Rows for everything that needs no model now; the products that do, in catalog order."""
        finished = self.journal.finished()
        known = priors(self.graph) if self.graph is not None else Priors({}, {})
        leaders: dict[str, Work] = {}
        todo: list[Work] = []
        served: list[tuple[Work, str]] = []  # (work, prior output to serve it from)
        for product in self.catalog.products:
            if product.id in finished:
                self.rows[product.id] = Row.from_dict(finished[product.id])
                self.stats["resumed"] += 1
                continue
            tier = assign(product, self.config)
            fields = product.fields(self.config.packing)
            language = product.language or self.config.language
            work = Work(product, tier, tier, fields, language, variant_key(fields, language))
            self.works[work.id] = work
            prior = known.by_product.get(product.id)
            if prior is not None and self.graph is not None:
                if self.graph.graph.nodes[prior].get("variant") == work.variant:
                    served.append((work, prior))
                    continue
                work.old_output = prior
                work.changed = changed_fields(self.graph, prior, fields)
            if work.variant in leaders:
                self.followers.setdefault(leaders[work.variant].id, []).append(work)
                continue
            reusable = known.by_variant.get(work.variant)
            if reusable is not None:
                served.append((work, reusable))
                continue
            leaders[work.variant] = work
            todo.append(work)
        self._serve_from_graph(served)
        return todo

    def _serve_from_graph(self, served: list[tuple[Work, str]]) -> None:
        if not served or self.graph is None:
            return
        texts = self.graph.store.texts([output for _, output in served])
        fresh: list[Row] = []
        for work, output in served:
            attrs = self.graph.graph.nodes[output]
            entity = str(attrs.get("entity"))
            row = work.row(model=attrs.get("model"), description=texts.get(output))
            row.tier = str(attrs.get("tier", work.tier))
            row.checks = dict(attrs.get("checks") or {})
            if entity == work.id:
                row.cached = True
                self.rows[work.id] = row
            else:
                row.reused_from = entity
                row.cached = False
                fresh.append(row)
        self._record_sync(fresh)
        self.journal.append(r.as_dict() for r in fresh)
        for row in fresh:
            self.rows[row.id] = row

    # -- one batch -------------------------------------------------------------------------------------

    async def describe(self, works: list[Work]) -> BatchResult:
        """Describe one batch (the body of one Prefect task): packed call, checks, lone retries, escalation;
        then record the finished rows in the graph and the journal."""
        started = time.perf_counter()
        result = BatchResult()
        try:
            answers = await self._ask(works, result, packed=len(works) > 1)
        except _Deferred as deferred:
            result.rate_limited, result.retry_after, result.requeue = True, deferred.retry_after, works
            answers = None
        except ContentmillError as error:
            if len(works) == 1:
                result.rows.append(works[0].row(model=None, description=None, error=str(error)))
                answers = None
            else:  # the packed request failed as a whole: each product gets its own chance
                answers = {w.id: (None, None) for w in works}
        if answers is not None:
            await self.judge(works, answers, result)
        await self.finish(result.rows)
        result.latency_s = time.perf_counter() - started
        return result

    async def judge(self, works: Sequence[Work], answers: dict[str, tuple[str | None, str | None]],
                    result: BatchResult) -> None:
        """Check each answer of one request; the failures are asked again alone (online), a tier up if they
        failed alone already."""
        alone: list[Work] = []
        for work in works:
            text, model = answers[work.id]
            if self._accept(work, text, model, result, packed=len(works) > 1):
                continue
            if len(works) > 1:
                alone.append(work)
            elif not self._escalate(work, text, model, result):
                alone.append(work)
        for outcome in await asyncio.gather(*(self._alone(w, result) for w in alone)):
            if outcome is not None:
                result.rows.append(outcome)

    async def _ask(self, works: Sequence[Work], result: BatchResult, *, packed: bool,
                   retry: str | None = None) -> dict[str, tuple[str | None, str | None]]:
        """One call for ``works`` (all of one tier and language); each item's text and the model that wrote it."""
        tier = works[0].tier
        models = self.config.models(tier)
        request = build_request([w.item() for w in works], works[0].language, models.words)
        tags = {**self.tags, "tier": tier, **({"retry": "quality", "failed_check": retry} if retry else {})}
        try:
            gen = await self.gw.generate(request, model=models.model, fallbacks=models.fallbacks, tags=tags,
                                         template_version=TEMPLATE_VERSION)
        except (RateLimited, ProviderRateLimited) as error:
            raise _Deferred(error.retry_after) from None
        return self.answers(works, gen, result, "packed" if packed else "alone")

    def answers(self, works: Sequence[Work], gen: Generation, result: BatchResult, mode: str
                ) -> dict[str, tuple[str | None, str | None]]:
        """Charge a call to its products and read each one's text from its answer."""
        self._charge(works, gen, result)
        texts = parse_answer(gen.text or "", [w.id for w in works])
        for work in works:
            work.attempts.append(f"{work.tier}:{mode}")
        return {w.id: (texts[w.id], gen.model) for w in works}

    def _charge(self, works: Sequence[Work], gen: Generation, result: BatchResult) -> None:
        result.calls += 1
        if not gen.cached:
            result.upstream_s += gen.latency_s
        result.congested |= gen.attempts > 1
        for work, usage in zip(works, _split(gen.usage, len(works)), strict=True):
            work.usage = work.usage + usage
            work.cost_usd += gen.cost_usd / len(works)
            work.cached &= gen.cached

    def _accept(self, work: Work, text: str | None, model: str | None, result: BatchResult, *, packed: bool) -> bool:
        """Check one answer; a passing one becomes a row."""
        if text is None:
            work.checks = {"answer": "missing or malformed in the answer"}
        else:
            checks = run_checks(text, work.fields, work.language, self.config.checks)
            work.checks = {name: reason or "ok" for name, reason in checks.items()}
            if not failed(checks):
                result.rows.append(work.row(model=model, description=text))
                return True
        if work.attempts:
            work.attempts[-1] += ":" + ",".join(n for n, r in work.checks.items() if r != "ok")
        return False

    def _escalate(self, work: Work, text: str | None, model: str | None, result: BatchResult) -> bool:
        """Move a product that failed alone one tier up; at the top, it becomes an error row. True if it ended."""
        higher = next_tier(work.tier)
        if higher is None or higher not in self.config.tiers:
            failures = ", ".join(f"{n}: {r}" for n, r in work.checks.items() if r != "ok")
            result.rows.append(work.row(model=model, description=text, error=f"failed its checks ({failures})"))
            return True
        work.tier = higher
        return False

    async def _alone(self, work: Work, result: BatchResult) -> Row | None:
        """Ask for one product on its own until it passes, runs out of tiers, or meets a rate limit."""
        retry = next((name for name, outcome in work.checks.items() if outcome != "ok"), None)
        while True:
            try:
                texts = await self._ask([work], result, packed=False, retry=retry)
            except _Deferred as deferred:
                result.rate_limited, result.retry_after = True, deferred.retry_after
                result.requeue.append(work)
                return None
            except ContentmillError as error:
                return work.row(model=None, description=None, error=str(error))
            text, model = texts[work.id]
            if self._accept(work, text, model, result, packed=False):
                return result.rows.pop()
            if self._escalate(work, text, model, result):
                return result.rows.pop()
            retry = next((n for n, r in work.checks.items() if r != "ok"), "answer")

    # -- recording -------------------------------------------------------------------------------------

    async def finish(self, rows: list[Row]) -> None:
        """Write finished rows to the graph, then the journal (fsynced): after this, a crash loses nothing."""
        if not rows:
            return
        async with self._graph_lock:
            await asyncio.to_thread(self._record_sync, rows)
        self.journal.append(r.as_dict() for r in rows)

    def _record_sync(self, rows: list[Row]) -> None:
        if self.graph is None:
            return
        outputs = []
        for row in rows:
            if row.error is None and row.description:
                work = self.works[row.id]
                attrs = {"variant": work.variant, "tier": row.tier, "checks": row.checks,
                         "reused_from": row.reused_from}
                outputs.append(NewOutput(row.id, row.description, work.language, row.model, row.cost_usd,
                                         work.fields, attrs, work.old_output))
        record(self.graph, outputs)

    # -- the whole run ---------------------------------------------------------------------------------

    async def run(self, dispatch: Dispatch, progress: Progress | None = None, *,
                  offline: OfflineDispatch | None = None) -> Summary:
        """Describe every planned product: through ``offline`` (the Batch API) first when given, then online,
        ``dispatch`` running each batch; ``progress(finished, total)`` after each batch."""
        started = time.perf_counter()
        todo = self.plan()
        total = len(self.catalog.products)
        queues: dict[tuple[Tier, str], deque[Work]] = {}
        for work in todo:
            queues.setdefault((work.tier, work.language), deque()).append(work)
        if offline is not None:
            await self._offline(queues, offline)
        in_flight: set[asyncio.Task[BatchResult]] = set()
        paused_until = 0.0
        while any(queues.values()) or in_flight:
            while any(queues.values()) and len(in_flight) < self.aimd.slots and time.monotonic() >= paused_until:
                batch = await self._next_batch(queues)
                in_flight.add(asyncio.ensure_future(dispatch(self.key, self.stage(batch), batch)))
            if not in_flight:
                await asyncio.sleep(max(0.0, paused_until - time.monotonic()))
                continue
            done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                result = finished.result()
                await self._absorb(result, queues)
                if result.rate_limited:
                    paused_until = time.monotonic() + (result.retry_after or DEFAULT_RETRY_AFTER_S)
            for listener in _LISTENERS:
                listener(len(self.rows), total)
            if progress is not None:
                await progress(len(self.rows), total)
        return self._summary(time.perf_counter() - started)

    def stage(self, batch: list[Work] | list[list[Work]]) -> str:
        """Keep a batch under an id for the task that runs it: a task's parameters are then two short strings,
        which Prefect records without walking every product of the batch."""
        self.stats["batches"] += 1
        batch_id = f"b{next(self._batch_ids)}"
        self.staged[batch_id] = batch
        return batch_id

    def unstage(self, batch_id: str) -> Any:
        return self.staged.pop(batch_id)

    async def _offline(self, queues: dict[tuple[Tier, str], deque[Work]], offline: OfflineDispatch) -> None:
        """One Batch API batch per tier and language, packed to the context window (no rate limits apply)."""
        jobs = []
        for (tier, _language), queue in queues.items():
            models = self.config.models(tier)
            info = self.gw.catalog.get(models.model)
            limit = Budget(context_tokens(info, self.config.packing), self.config.packing.max_items)
            costs = deque((i, w.tokens(info.tokenizer) + output_budget(models.words, 1))
                          for i, w in enumerate(queue))
            overhead = overhead_tokens(queue[0].language, models.words, info.tokenizer)
            groups = []
            while costs:
                groups.append([queue[i] for i in take(costs, limit, overhead)])
            queue.clear()
            jobs.append(offline(self.key, self.stage(groups), groups))
        for result in await asyncio.gather(*jobs):
            await self._absorb(result, queues)

    async def _next_batch(self, queues: dict[tuple[Tier, str], deque[Work]]) -> list[Work]:
        (tier, _language), queue = max(((k, q) for k, q in queues.items() if q), key=lambda kq: len(kq[1]))
        models = self.config.models(tier)
        info = self.gw.catalog.get(models.model)
        limit = await budget(self.gw, info, self.config.packing, self.aimd.slots)
        per_item = output_budget(models.words, 1)
        costs = deque((i, w.tokens(info.tokenizer) + per_item) for i, w in zip(range(limit.items), queue, strict=False))
        chosen = take(costs, limit, overhead_tokens(queue[0].language, models.words, info.tokenizer))
        batch = [queue[i] for i in chosen]
        for _ in chosen:
            queue.popleft()
        return batch

    async def _absorb(self, result: BatchResult, queues: dict[tuple[Tier, str], deque[Work]]) -> None:
        self.stats["calls"] += result.calls
        self.stats["upstream_s"] += result.upstream_s
        self.stats["rate_limited"] += result.rate_limited
        self.aimd.observe(rate_limited=result.rate_limited or result.congested, latency_s=result.latency_s)
        for work in reversed(result.requeue):
            queues.setdefault((work.tier, work.language), deque()).appendleft(work)
        variants: list[Row] = []
        for row in result.rows:
            self.rows[row.id] = row
            for follower in self.followers.pop(row.id, []):
                copy = follower.row(model=row.model, description=row.description, error=row.error)
                copy.tier, copy.checks, copy.reused_from, copy.cached = row.tier, row.checks, row.id, False
                variants.append(copy)
        for copy in variants:
            self.rows[copy.id] = copy
        await self.finish(variants)

    def _summary(self, seconds: float) -> Summary:
        order = {p.id: i for i, p in enumerate(self.catalog.products)}
        rows = sorted(self.rows.values(), key=lambda r: order.get(r.id, len(order)))
        write_rows(self.out, rows)
        errors_out = None
        if self.catalog.errors:
            errors_path = self.out.with_name(self.out.stem + ".errors.jsonl")
            write_errors(errors_path, (e.as_dict() for e in self.catalog.errors))
            errors_out = str(errors_path)
        by_tier, by_category = totals(rows)
        self.journal.remove()
        trace = self.aimd.trace or [self.aimd.limit]
        return Summary(
            items=len(rows), done=sum(r.error is None for r in rows), failed=sum(r.error is not None for r in rows),
            cached=sum(r.cached for r in rows), reused=sum(r.reused_from is not None for r in rows),
            cost_usd=round(sum(r.cost_usd for r in rows), 8), tokens=sum(r.tokens for r in rows),
            by_tier=by_tier, by_category=by_category, out=str(self.out), errors_out=errors_out,
            row_errors=len(self.catalog.errors), calls=int(self.stats["calls"]), batches=int(self.stats["batches"]),
            rate_limited=int(self.stats["rate_limited"]),
            concurrency={"start": float(self.config.packing.start_concurrency), "min": min(trace),
                         "max": max(trace), "end": trace[-1], "decreases": float(self.aimd.decreases)},
            seconds=round(seconds, 3), upstream_s=round(float(self.stats["upstream_s"]), 3),
            resumed=int(self.stats["resumed"]), routes=dict(self.routes),
        )

    def table(self, summary: Summary) -> list[dict[str, Any]]:
        return cost_table(summary.by_tier, summary.by_category)
