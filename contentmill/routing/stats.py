"""Live statistics per model from the ledger, and catalog priors blended with them while data is thin.

Live, over a rolling window (``RoutingConfig.window_s``, newest ``max_rows`` calls): the P99 latency of the calls
that reached a provider (successes and failures), the error rate, the share of SLA misses (slower than
``sla_latency_s``), the USD spent per useful output (an ``ok`` call that produced output), and the mean and
standard deviation of the quality scores.

The blend is a posterior mean with the prior counted as ``k`` pseudo-observations::

    blended = (k * prior + n * observed) / (k + n)

with ``k = prior_calls`` and ``n`` the calls in the window for latency, error rate, SLA misses and cost (``n`` =
useful outputs for cost), and ``k = prior_scores``, ``n`` = scores for quality. For the error rate this is the mean
of a Beta posterior; with no data the prior stands, and after ``k`` calls both weigh the same.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from contentmill.catalog import ModelInfo
from contentmill.errors import CatalogError
from contentmill.ledger import LedgerStore
from contentmill.ledger.records import utcnow
from contentmill.ledger.schema import calls, quality_scores
from contentmill.metering import Usage
from contentmill.routing.config import RoutingConfig

REACHED_PROVIDER = ("ok", "error", "orphaned")  # cache hits and refusals say nothing about a model's health


@dataclass(frozen=True, slots=True)
class QualityStats:
    n: int
    mean: float
    sd: float  # sample standard deviation (0 for a single score)


@dataclass(frozen=True, slots=True)
class LiveStats:
    """What the ledger says about one model over the window."""

    model: str
    calls: int = 0
    errors: int = 0
    sla_misses: int = 0
    p99_latency_s: float | None = None
    cost_usd: float = 0.0
    useful: int = 0
    quality: QualityStats | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None

    @property
    def cost_per_output(self) -> float | None:
        return self.cost_usd / self.useful if self.useful else None


@dataclass(frozen=True, slots=True)
class Blended:
    """A model's statistics as the matrix sees them: priors blended with live data (see the module docstring)."""

    model: str
    quality: float
    latency_p99_s: float
    cost_per_output_usd: float
    error_rate: float
    sla_miss_rate: float
    calls: int
    quality_samples: int
    languages: tuple[str, ...]
    task_kinds: tuple[str, ...]


def p99(values: list[float]) -> float:
    """The nearest-rank 99th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def quality_of(n: int, total: float, total_sq: float) -> QualityStats:
    mean = total / n
    var = max(0.0, (total_sq - n * mean * mean) / (n - 1)) if n > 1 else 0.0
    return QualityStats(n, mean, math.sqrt(var))


def read_quality(store: LedgerStore, since: datetime, *, by_template: bool = False
                 ) -> dict[tuple[str, str | None], QualityStats]:
    """Quality scores since ``since`` per (model, template version); the version is None unless ``by_template``."""
    keys = [quality_scores.c.model] + ([quality_scores.c.template_version] if by_template else [])
    query = (sa.select(*keys, sa.func.count().label("n"), sa.func.sum(quality_scores.c.score).label("total"),
                       sa.func.sum(quality_scores.c.score * quality_scores.c.score).label("total_sq"))
             .where(quality_scores.c.ts >= since).group_by(*keys))
    out: dict[tuple[str, str | None], QualityStats] = {}
    for row in store.rows(query, "read quality scores"):
        version = row["template_version"] if by_template else None
        out[(row["model"], version)] = quality_of(int(row["n"]), float(row["total"]), float(row["total_sq"]))
    return out


def read_live_stats(store: LedgerStore, config: RoutingConfig, now: datetime | None = None) -> dict[str, LiveStats]:
    """Per-model statistics of the window ending ``now`` (one query for calls, one for quality scores)."""
    since = (now or utcnow()) - timedelta(seconds=config.window_s)
    query = (sa.select(calls.c.model, calls.c.outcome, calls.c.latency_s, calls.c.cost_usd, calls.c.output_tokens,
                       calls.c.characters, calls.c.seconds)
             .where(calls.c.ts >= since, calls.c.outcome.in_(REACHED_PROVIDER))
             .order_by(calls.c.ts.desc()).limit(config.max_rows))
    latencies: defaultdict[str, list[float]] = defaultdict(list)
    counts: defaultdict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0, 0])  # calls, errors, misses, usd, useful
    for row in store.rows(query, "read call statistics for routing"):
        model, entry = row["model"], counts[row["model"]]
        latencies[model].append(float(row["latency_s"]))
        entry[0] += 1
        entry[1] += row["outcome"] != "ok"
        entry[2] += float(row["latency_s"]) > config.sla_latency_s
        entry[3] += float(row["cost_usd"])
        entry[4] += row["outcome"] == "ok" and bool(row["output_tokens"] or row["characters"] or row["seconds"])
    quality = {model: q for (model, _), q in read_quality(store, since).items()}
    out: dict[str, LiveStats] = {}
    for model in set(counts) | set(quality):
        n, errors, misses, usd, useful = counts[model] if model in counts else (0, 0, 0, 0.0, 0)
        out[model] = LiveStats(model, int(n), int(errors), int(misses),
                               p99(latencies[model]) if latencies.get(model) else None, float(usd), int(useful),
                               quality.get(model))
    return out


def blend(prior: float, k: float, observed: float | None, n: int) -> float:
    """``(k * prior + n * observed) / (k + n)``; the prior alone when nothing was observed."""
    if observed is None or n <= 0:
        return prior
    return (k * prior + n * observed) / (k + n)


def prior_cost(info: ModelInfo, config: RoutingConfig) -> float:
    """USD of a typical request (``typical_input_tokens`` in, ``typical_output_tokens`` out) at catalog prices."""
    return info.cost(Usage(input_tokens=config.typical_input_tokens, output_tokens=config.typical_output_tokens))


def blended(info: ModelInfo, live: LiveStats | None, config: RoutingConfig) -> Blended:
    """The model's matrix statistics; raises CatalogError for a model the gateway would refuse (no price)."""
    if info.missing_price():
        raise CatalogError(f"{info.name} has no {info.missing_price()} price in the catalog; the router skips it")
    live = live or LiveStats(info.name)
    k, n = config.prior_calls, live.calls
    q = live.quality
    return Blended(
        model=info.name,
        quality=blend(info.quality, config.prior_scores, q.mean if q else None, q.n if q else 0),
        latency_p99_s=blend(info.latency_s or config.default_latency_s, k, live.p99_latency_s, n),
        cost_per_output_usd=blend(prior_cost(info, config), k, live.cost_per_output, live.useful),
        error_rate=blend(config.prior_error_rate, k, live.error_rate, n),
        sla_miss_rate=blend(0.0, k, live.sla_misses / n if n else None, n),
        calls=n,
        quality_samples=q.n if q else 0,
        languages=info.languages,
        task_kinds=info.task_kinds,
    )


def snapshot(models: Mapping[str, ModelInfo], live: Mapping[str, LiveStats], config: RoutingConfig
             ) -> tuple[dict[str, Blended], dict[str, str]]:
    """Blended statistics of every priced text model, and why each other model was left out."""
    stats: dict[str, Blended] = {}
    skipped: dict[str, str] = {}
    for name, info in models.items():
        if info.modality != "text":
            skipped[name] = f"a {info.modality} model"
            continue
        try:
            stats[name] = blended(info, live.get(name), config)
        except CatalogError as exc:
            skipped[name] = str(exc)
    return stats, skipped
