"""What travels between a run's planning, its jobs and its scheduling: a product on its way to a
description (``Work``), a job of them as one task's input (``Job``), and what the task gives back
(``JobResult``).

All three are plain picklable data, so a job runs in the flow's process or in a Dask worker on another
machine alike: a task needs nothing but its ``Job`` (and the settings of the process it runs in).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from contentmill.metering import Usage
from contentmill.products.catalog import Product
from contentmill.products.config import ProductsConfig, Tier
from contentmill.products.output import Row
from contentmill.products.prompts import TEMPLATE_VERSION, Item, item_tokens


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
    lost: int = 0  # jobs of it that never came back (their worker died)
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


@dataclass(frozen=True)
class Job:
    """One task's input: the products of packed requests (``groups``; online, one request each, sent side by side;
    with the Batch API, a tier's requests as one vendor batch), with the run's config (tiers already routed) and
    cost tags."""

    run_id: str
    number: int
    groups: tuple[tuple[Work, ...], ...]
    config: ProductsConfig
    tags: dict[str, str]

    @property
    def works(self) -> list[Work]:
        return [work for group in self.groups for work in group]

    @property
    def tier(self) -> Tier:
        return self.groups[0][0].tier

    @property
    def size(self) -> int:
        return sum(len(group) for group in self.groups)


@dataclass
class JobResult:
    rows: list[Row] = field(default_factory=list)
    requeue: list[Work] = field(default_factory=list)  # rate-limited: to be sent again later
    rate_limited: bool = False
    retry_after: float | None = None
    latency_s: float = 0.0  # wall time of the job
    upstream_s: float = 0.0  # time spent in provider calls (0 for cache hits)
    calls: int = 0
    congested: bool = False  # a call needed retries (429s or errors the gateway absorbed)

    def add(self, other: JobResult) -> None:
        """Take in the result of another request of the same job, described side by side."""
        self.rows += other.rows
        self.requeue += other.requeue
        self.rate_limited |= other.rate_limited
        if other.retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, other.retry_after)
        self.latency_s = max(self.latency_s, other.latency_s)
        self.upstream_s += other.upstream_s
        self.calls += other.calls
        self.congested |= other.congested


def variant_key(fields: dict[str, str], language: str) -> str:
    text = json.dumps([TEMPLATE_VERSION, language, sorted(fields.items())], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def split_usage(total: Usage, parts: int) -> list[Usage]:
    """Usage shared out between the items of one call (integer tokens, the remainder to the first)."""
    def share(value: int, index: int) -> int:
        return value // parts + (1 if index < value % parts else 0)

    return [Usage(input_tokens=share(total.input_tokens, i), output_tokens=share(total.output_tokens, i),
                  cached_input_tokens=share(total.cached_input_tokens, i)) for i in range(parts)]
