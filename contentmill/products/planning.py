"""Planning a run: what needs a model, and packing it into jobs, read from the catalog as jobs are wanted.

Planning costs nothing: a product in this run's journal (a killed run being resumed) keeps its row, a product
whose current output in the knowledge graph was made from the same field values is served from it, and a
product with the same fields as another (a variant: same name, brand, price, text under another id) waits for
that product's description and reuses it. The rest go into one queue per tier and language; a job is taken
from a queue once it holds a full request (``max_items``, or the model's context share), or at the end of the
catalog. So the products held at any time are a few requests' worth, whatever the catalog's size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

from contentmill.gateway import Gateway
from contentmill.products.catalog import Product, iter_catalog
from contentmill.products.config import ProductsConfig, Tier
from contentmill.products.output import Row
from contentmill.products.packing import PackLimit, context_tokens, pack_limit, take
from contentmill.products.prompts import output_budget, overhead_tokens
from contentmill.products.recording import Recorder
from contentmill.products.reuse import Priors, changed_fields, priors
from contentmill.products.tiers import assign
from contentmill.products.work import Work, variant_key

SERVE_CHUNK = 256  # products served from the graph are read and recorded this many at a time
Queue = tuple[Tier, str]  # (tier, language)


def variant_row(follower: Work, leader: Row) -> Row:
    """A variant's row: its leader's description, at no cost."""
    copy = follower.row(model=leader.model, description=leader.description, error=leader.error)
    copy.tier, copy.checks, copy.reused_from, copy.cached = leader.tier, leader.checks, leader.id, False
    return copy


class Planner:
    """The catalog's products that need a model, in catalog order; everything else recorded on the way."""

    def __init__(self, config: ProductsConfig, catalog: Path, limit: int | None, recorder: Recorder) -> None:
        self.config, self.catalog, self.limit, self.recorder = config, catalog, limit, recorder
        self.leaders: dict[str, str] = {}  # variant -> the product whose description it gets
        self.followers: dict[str, list[Work]] = {}  # leader id -> variants waiting for its description
        self.resumed = 0

    def works(self) -> Iterator[Work]:
        graph = self.recorder.graph
        known = priors(graph) if graph is not None else Priors({}, {})
        served: list[tuple[Work, str]] = []  # (work, prior output to serve it from)
        journal = self.recorder.journal
        for product in iter_catalog(self.catalog, self.config.columns, self.limit):
            if not isinstance(product, Product):
                continue
            work = self._work(product)
            if product.id in journal:
                self.resumed += 1
                self.leaders.setdefault(work.variant, product.id)
                continue
            prior = known.by_product.get(product.id)
            if prior is not None and graph is not None:
                if graph.graph.nodes[prior].get("variant") == work.variant:
                    served.append((work, prior))
                    continue
                work.old_output = prior
                work.changed = changed_fields(graph, prior, work.fields)
            leader = self.leaders.get(work.variant)
            if leader is not None:
                self._follow(leader, work)
            elif (reusable := known.by_variant.get(work.variant)) is not None:
                served.append((work, reusable))
            else:
                self.leaders[work.variant] = work.id
                yield work
            if len(served) >= SERVE_CHUNK:
                self._serve(served)
        self._serve(served)

    def _work(self, product: Product) -> Work:
        tier = assign(product, self.config)
        fields = product.fields(self.config.packing)
        language = product.language or self.config.language
        return Work(product, tier, tier, fields, language, variant_key(fields, language))

    def _follow(self, leader: str, work: Work) -> None:
        """Wait for the leader's description, or copy it now if the leader is done."""
        done = self.recorder.journal.row(leader)
        if done is None:
            self.followers.setdefault(leader, []).append(work)
        else:
            self.recorder.record([variant_row(work, Row.from_dict(done))], {work.id: work})

    def settle_followers(self) -> None:
        """Variants still waiting once every job is recorded: their leaders' rows are in the journal now."""
        for leader, works in self.followers.items():
            done = self.recorder.journal.row(leader)
            if done is not None:
                row = Row.from_dict(done)
                self.recorder.record([variant_row(work, row) for work in works], {work.id: work for work in works})
        self.followers.clear()

    def _serve(self, served: list[tuple[Work, str]]) -> None:
        """Rows from prior outputs: a product's own unchanged one (kept), or a variant's (recorded as a reuse)."""
        graph = self.recorder.graph
        if not served or graph is None:
            return
        texts = graph.store.texts([output for _, output in served])
        kept: list[Row] = []
        reused: list[Row] = []
        for work, output in served:
            attrs = graph.graph.nodes[output]
            entity = str(attrs.get("entity"))
            row = work.row(model=attrs.get("model"), description=texts.get(output))
            row.tier = str(attrs.get("tier", work.tier))
            row.checks = dict(attrs.get("checks") or {})
            row.cached = entity == work.id
            if row.cached:
                kept.append(row)
            else:
                row.reused_from = entity
                reused.append(row)
        self.recorder.record(reused, {work.id: work for work, _ in served})
        self.recorder.record(kept, None)
        served.clear()


class Packer:
    """Per tier and language queues filled from the planner, and the next job to send."""

    def __init__(self, works: Iterator[Work], gateway: Gateway, config: ProductsConfig) -> None:
        self._works, self.gateway, self.config = works, gateway, config
        self.queues: dict[Queue, deque[Work]] = {}
        self.exhausted = False

    def pending(self) -> bool:
        return not self.exhausted or any(self.queues.values())

    def requeue(self, works: Sequence[Work]) -> None:
        """Works to send again (rate-limited, or their job was lost) go first."""
        for work in reversed(works):
            self.queues.setdefault((work.tier, work.language), deque()).appendleft(work)

    async def next_request(self, slots: int) -> list[Work] | None:
        """The next request's products, from the fullest queue; None when everything has been sent."""
        self._fill()
        filled = [(key, queue) for key, queue in self.queues.items() if queue]
        if not filled:
            return None
        (tier, _language), queue = max(filled, key=lambda kq: len(kq[1]))
        models = self.config.models(tier)
        info = self.gateway.catalog.get(models.model)
        limit = await pack_limit(self.gateway, info, self.config.packing, slots)
        per_item = output_budget(models.words, 1)
        costs = deque((i, w.tokens(info.tokenizer) + per_item) for i, w in zip(range(limit.items), queue, strict=False))
        chosen = take(costs, limit, overhead_tokens(queue[0].language, models.words, info.tokenizer))
        works = [queue[i] for i in chosen]
        for _ in chosen:
            queue.popleft()
        return works

    def _fill(self) -> None:
        """Read the catalog on until a queue holds a full request (or the catalog ends)."""
        while not self.exhausted and not any(self._full(key, queue) for key, queue in self.queues.items()):
            work = next(self._works, None)
            if work is None:
                self.exhausted = True
                return
            self.queues.setdefault((work.tier, work.language), deque()).append(work)

    def _full(self, key: Queue, queue: deque[Work]) -> bool:
        packing = self.config.packing
        if len(queue) >= packing.max_items:
            return True
        models = self.config.models(key[0])
        info = self.gateway.catalog.get(models.model)
        per_item = output_budget(models.words, 1)
        return sum(w.tokens(info.tokenizer) + per_item for w in queue) >= context_tokens(info, packing)

    def groups(self) -> Iterator[list[list[Work]]]:
        """For the Batch API: everything, each queue packed to the context window (no rate limits apply)."""
        for work in self._works:
            self.queues.setdefault((work.tier, work.language), deque()).append(work)
        self.exhausted = True
        for (tier, _language), queue in self.queues.items():
            if not queue:
                continue
            models = self.config.models(tier)
            info = self.gateway.catalog.get(models.model)
            limit = PackLimit(context_tokens(info, self.config.packing), self.config.packing.max_items)
            costs = deque((i, w.tokens(info.tokenizer) + output_budget(models.words, 1))
                          for i, w in enumerate(queue))
            overhead = overhead_tokens(queue[0].language, models.words, info.tokenizer)
            groups = []
            while costs:
                groups.append([queue[i] for i in take(costs, limit, overhead)])
            queue.clear()
            yield groups
