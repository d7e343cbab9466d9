"""``GET /metrics``: requests, tokens, cost, latency, cache hits and refusals, by model and team.

Each server process counts its own; with ``--workers N`` the processes write to one directory
(``PROMETHEUS_MULTIPROC_DIR``, set by ``contentmill serve``) and any of them answers for all, as
prometheus_client's multiprocess mode does. Labels are model, team and outcome codes: never a key or a prompt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from contentmill.gateway import Generation

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class _CallSeries:
    """The series one model call of a model, team and outcome counts in."""

    calls: Counter
    cached: Counter
    latency: Histogram
    saved: Counter
    input_tokens: Counter
    output_tokens: Counter
    cost: Counter


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("contentmill_requests", "Requests answered, by route and HTTP status",
                                ["route", "status"], registry=r)
        self.calls = Counter("contentmill_model_calls", "Model calls, by model, team and how they ended",
                             ["model", "team", "outcome"], registry=r)
        self.tokens = Counter("contentmill_tokens", "Tokens billed, by model, team and direction",
                              ["model", "team", "direction"], registry=r)
        self.cost = Counter("contentmill_cost_usd", "USD billed, by model and team", ["model", "team"], registry=r)
        self.saved = Counter("contentmill_cache_saved_usd", "USD the cache saved, by model and team",
                             ["model", "team"], registry=r)
        self.cache_hits = Counter("contentmill_cache_hits", "Answers served from the cache, by tier", ["tier"],
                                  registry=r)
        self.refusals = Counter("contentmill_refusals", "Requests refused, by error code", ["code"], registry=r)
        self.latency = Histogram("contentmill_request_latency_seconds", "Time to the full answer, by model and team",
                                 ["model", "team"], buckets=LATENCY_BUCKETS, registry=r)
        self._series: dict[tuple[str, str, str], _CallSeries] = {}  # by model, team and outcome

    def observe(self, gen: Generation, seconds: float, outcome: str = "ok") -> None:
        team = gen.tags.get("team", "")
        series = self._series.get((gen.model, team, outcome))
        if series is None:  # labels() validates and locks on every call; a call's series are looked up once
            series = self._series[(gen.model, team, outcome)] = _CallSeries(
                self.calls.labels(gen.model, team, outcome), self.calls.labels(gen.model, team, "cached"),
                self.latency.labels(gen.model, team), self.saved.labels(gen.model, team),
                self.tokens.labels(gen.model, team, "input"), self.tokens.labels(gen.model, team, "output"),
                self.cost.labels(gen.model, team))
        series.latency.observe(seconds)
        if gen.cached:
            series.cached.inc()
            self.cache_hits.labels(gen.cache_tier or "unknown").inc()
            series.saved.inc(gen.saved_usd)
            return
        series.calls.inc()
        series.input_tokens.inc(gen.usage.input_tokens)
        series.output_tokens.inc(gen.usage.output_tokens)
        series.cost.inc(gen.cost_usd)

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)
