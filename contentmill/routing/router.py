"""The router: a tier rule fixes the candidates, the matrix ranks them, cooldowns remove the resting ones, the
ranking gives the fallbacks, and budget pressure may move low-priority work to a cheaper tier or defer it.

Decisions are made from memory (a snapshot of blended statistics and of budget spend, re-read by ``refresh``), so
``choose`` never queries the database except once for a budget scope it has not seen since the last refresh.
Recorded decisions are written in batches by a background thread, like the gateway's call records; ``flush``
writes them now and ``close`` (or leaving ``with``) writes what is left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from contentmill.catalog import Catalog
from contentmill.errors import ConfigError, ContentmillError, RouteDeferred, RoutingError
from contentmill.gateway.cooldowns import Cooldowns
from contentmill.gateway.policy import Scope
from contentmill.ids import new_id
from contentmill.ledger import Budget, LedgerStore
from contentmill.ledger.forecast import period_bounds
from contentmill.ledger.records import utcnow
from contentmill.ledger.writer import BatchWriter
from contentmill.requests import TextRequest
from contentmill.routing.config import DIMENSIONS, PRIORITIES, DegradationStep, RoutingConfig, Weights
from contentmill.routing.floor import FloorChoice, cheapest_meeting_floor
from contentmill.routing.matrix import Candidate, SelectionMatrix
from contentmill.routing.stats import LiveStats, read_live_stats, read_quality, snapshot
from contentmill.routing.store import ROUTE_TAG, write_decisions

if TYPE_CHECKING:
    from contentmill.gateway import Gateway, Generation

log = logging.getLogger("contentmill.routing")
DEFERRED = "(deferred)"


def decision_id() -> str:
    """64 random bits in 16 hex digits: the id rides on every routed call as a tag, and the gateway's tag check
    (a credential scan, uncached for a value never seen before) costs about half as much on 16 digits as on 32."""
    return new_id()[:16]


@dataclass(frozen=True, slots=True)
class BudgetPressure:
    """The most-used budget that applies to a request: its label and the share of its limit spent."""

    label: str
    used: float


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Which model to call, the fallbacks in ranking order, every candidate's scores, and why."""

    model: str
    fallbacks: tuple[str, ...]
    candidates: tuple[Candidate, ...]
    reason: str
    task_kind: str
    language: str | None
    tier: str
    priority: str
    weights: Weights
    downgraded_from: str | None = None
    deferred: bool = False
    id: str = field(default_factory=decision_id)
    ts: datetime = field(default_factory=utcnow)

    def row(self, link: str | None = None) -> dict[str, Any]:
        """The ``route_decisions`` row; ``link`` is the provider request id of the routed call, if there was one."""
        return {
            "id": self.id, "ts": self.ts, "request_hash": link or self.id, "task_kind": self.task_kind,
            "chosen_model": self.model, "tier": self.tier, "priority": self.priority,
            "weights": self.weights.as_dict(), "candidates": [c.as_dict() for c in self.candidates],
            "reason": self.reason, "downgraded_from": self.downgraded_from,
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.row(), "ts": self.ts.isoformat(), "fallbacks": list(self.fallbacks),
                "language": self.language, "deferred": self.deferred}


class Router:
    """Chooses a model per request; see the package docstring for the API and ``routing.matrix`` for the scores."""

    def __init__(
        self,
        catalog: Catalog,
        store: LedgerStore | None = None,
        config: RoutingConfig | None = None,
        *,
        cooldowns: Cooldowns | None = None,
        budgets: Sequence[Budget] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.config = config or RoutingConfig()
        self.cooldowns = cooldowns
        self.budgets = list(budgets)
        self._clock = clock
        self.live: dict[str, LiveStats] = {}
        self.matrix = SelectionMatrix(*snapshot(catalog.models, {}, self.config))
        self.refreshed_at: float | None = None
        self._spent: dict[tuple[str, str, str], float] = {}  # (scope key, value, period) -> USD this period
        self._writer: BatchWriter[dict[str, Any]] | None = None

    @classmethod
    def for_gateway(cls, gateway: Gateway, config: RoutingConfig | None = None) -> Router:
        """A router over the gateway's catalog, ledger, cooldowns and budgets."""
        return cls(gateway.catalog, gateway.store, config, cooldowns=gateway.cooldowns, budgets=gateway.policy.budgets)

    # -- statistics ------------------------------------------------------------------------------------------

    def refresh(self, now: datetime | None = None) -> None:
        """Re-read live statistics and budget spend from the ledger and rebuild the snapshot."""
        if self.store is not None:
            self.live = read_live_stats(self.store, self.config, now)
        self.matrix = SelectionMatrix(*snapshot(self.catalog.models, self.live, self.config))
        self._spent = {}
        self.refreshed_at = self._clock()

    def stale(self) -> bool:
        return self.refreshed_at is None or self._clock() - self.refreshed_at >= self.config.refresh_s

    async def refresh_if_stale(self) -> None:
        if self.stale():
            await asyncio.to_thread(self.refresh)

    # -- budgets -------------------------------------------------------------------------------------------

    def pressure(self, tags: Mapping[str, str]) -> BudgetPressure | None:
        """The applicable budget with the largest share spent (this period, from the ledger), if any."""
        facts = {**tags, "api_type": "text", "all": "*"}
        worst: BudgetPressure | None = None
        for budget in self.budgets:
            concrete = Scope(budget.scope_key, budget.scope_value).resolve(facts)
            if concrete is None:
                continue
            value = concrete.partition("=")[2]
            used = self._spent_in_period(budget, value) / budget.limit_usd
            if worst is None or used > worst.used:
                worst = BudgetPressure(f"{concrete} per {budget.period}", used)
        return worst

    def _spent_in_period(self, budget: Budget, value: str) -> float:
        key = (budget.scope_key, value, budget.period)
        if key not in self._spent:
            if self.store is None:
                return 0.0
            start, _ = period_bounds(budget.period, budget.timezone, datetime.now(UTC))
            self._spent[key] = self.store.spent(budget.scope_key, value, start)
        return self._spent[key]

    def _degradation(self, priority: str, pressure: BudgetPressure | None) -> DegradationStep | None:
        """The harshest step that applies: a deferral over any downgrade, then the most steps."""
        if pressure is None:
            return None
        steps = [s for s in self.config.degradation if pressure.used >= s.at and priority in s.priorities]
        return max(steps, key=lambda s: (s.action == "defer", s.steps), default=None)

    # -- the decision ----------------------------------------------------------------------------------------

    def rank(self, models: Sequence[str], *, task_kind: str | None = None, language: str | None = None,
             weights: Weights | Mapping[str, float] | None = None) -> tuple[Candidate, ...]:
        """The matrix ranking of ``models`` (best first), before cooldowns and budgets."""
        return self.matrix.rank(models, Weights.of(weights) if weights is not None else self.config.weights,
                                task_kind, language)

    def choose(
        self,
        task_kind: str = "chat",
        language: str | None = "en",
        tier: str | None = None,
        priority: str = "normal",
        tags: Mapping[str, str] | None = None,
        *,
        weights: Weights | Mapping[str, float] | None = None,
    ) -> RouteDecision:
        """Pick a model; raises RouteDeferred when budget pressure defers this priority, RoutingError when no
        candidate of the tier can be called."""
        if priority not in PRIORITIES:
            raise ConfigError(f"priority must be one of {', '.join(PRIORITIES)} (got {priority!r})")
        asked = tier or self.config.task_tiers.get(task_kind, self.config.default_tier)
        self.config.tier_models(asked)
        used_weights = Weights.of(weights) if weights is not None else self.config.weights
        pressure = self._degradation_input(priority, tags)
        step = self._degradation(priority, pressure)
        notes: list[str] = []
        chosen_tier, downgraded_from = asked, None
        if step is not None and pressure is not None:
            spent = f"{pressure.label} {pressure.used:.0%} spent"
            if step.action == "defer":
                decision = RouteDecision(DEFERRED, (), (), f"deferred {priority}-priority work: {spent} "
                                         f"(defers at {step.at:.0%})", task_kind, language, asked, priority,
                                         used_weights)
                log.warning("routing: %s", decision.reason)
                raise RouteDeferred(decision.reason + "; run it later or raise the budget", decision)
            cheaper = self.config.cheaper(asked, step.steps)
            if cheaper != asked:
                chosen_tier, downgraded_from = cheaper, asked
                notes.append(f"downgraded {priority}-priority work from {asked} to {cheaper}: {spent} "
                             f"(downgrades at {step.at:.0%})")
                log.warning("routing: %s", notes[-1])
        ranked = self.rank(self.config.tier_models(chosen_tier), task_kind=task_kind, language=language,
                           weights=used_weights)
        ranked = self._rested(ranked, notes)
        usable = [c for c in ranked if c.excluded is None]
        if not usable:
            reasons = "; ".join(f"{c.model}: {c.excluded}" for c in ranked)
            raise RoutingError(f"no model of tier {chosen_tier} can be called ({reasons}); fix the tier's models "
                               "in the routing file or the catalog")
        best = usable[0]
        notes.insert(0, _why(best, usable[1] if len(usable) > 1 else None, chosen_tier))
        return RouteDecision(best.model, tuple(c.model for c in usable[1:]), ranked, "; ".join(notes), task_kind,
                             language, chosen_tier, priority, used_weights, downgraded_from)

    def _degradation_input(self, priority: str, tags: Mapping[str, str] | None) -> BudgetPressure | None:
        if not self.budgets or not any(priority in s.priorities for s in self.config.degradation):
            return None
        return self.pressure(tags or {})

    def _rested(self, ranked: tuple[Candidate, ...], notes: list[str]) -> tuple[Candidate, ...]:
        """Mark models in cooldown as excluded, unless every usable one is cooling (then the gateway probes)."""
        if self.cooldowns is None:
            return ranked
        cooling = {c.model: left for c in ranked if c.excluded is None and (left := self.cooldowns.cooling(c.model))}
        if not cooling:
            return ranked
        if len(cooling) == sum(c.excluded is None for c in ranked):
            notes.append("every candidate is cooling down; the best is tried anyway")
            return ranked
        notes.append("skipped in cooldown: " + ", ".join(cooling))
        return tuple(c.excluding(f"cooling down for {cooling[c.model]:.0f} s after repeated failures")
                     if c.model in cooling else c for c in ranked)

    def quality_floor(self, floor: float, *, tier: str | None = None, confidence: float = 0.95,
                      by_template: bool = False) -> FloorChoice:
        """The cheapest model (of ``tier``, or any) whose scored quality meets ``floor`` with ``confidence``; reads
        the window's quality scores from the ledger (see ``routing.floor``)."""
        models = self.config.tier_models(tier) if tier else None
        since = utcnow() - timedelta(seconds=self.config.window_s)
        quality = read_quality(self.store, since, by_template=by_template) if self.store is not None else {}
        return cheapest_meeting_floor(quality, self.matrix.stats, floor, confidence=confidence, models=models)

    # -- routed calls ----------------------------------------------------------------------------------------

    def record(self, decision: RouteDecision, link: str | None = None) -> None:
        """Queue the decision for the ledger (a router without a store keeps nothing)."""
        if self.store is None:
            return
        if self._writer is None:
            store = self.store
            self._writer = BatchWriter(lambda rows: write_decisions(store, rows), name="contentmill-route-writer")
        self._writer.put(decision.row(link))

    def flush(self) -> int:
        """Write the queued decisions now; returns how many."""
        return self._writer.flush() if self._writer is not None else 0

    def close(self) -> None:
        """Write what is queued and stop the writer thread (the store stays open: it is the caller's)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def generate(
        self,
        gateway: Gateway,
        request: TextRequest,
        *,
        task_kind: str = "chat",
        language: str | None = "en",
        tier: str | None = None,
        priority: str = "normal",
        tags: Mapping[str, str] | None = None,
        weights: Weights | Mapping[str, float] | None = None,
        **options: Any,
    ) -> tuple[Generation, RouteDecision]:
        """Choose, call ``gateway.generate(model=..., fallbacks=...)`` with the tag ``route=<decision id>``, and
        record the decision linked to the call (also when the call fails or is deferred)."""
        await self.refresh_if_stale()
        tags = dict(tags or {})
        try:
            decision = self.choose(task_kind, language, tier, priority, tags, weights=weights)
        except RouteDeferred as deferred:
            if isinstance(deferred.decision, RouteDecision):
                self.record(deferred.decision)
            raise
        try:
            gen = await gateway.generate(request, model=decision.model, fallbacks=decision.fallbacks,
                                         tags={**tags, ROUTE_TAG: decision.id}, **options)
        except ContentmillError:
            self.record(decision)
            raise
        self.record(decision, gen.request_id)
        return gen, decision


def _why(best: Candidate, runner_up: Candidate | None, tier: str) -> str:
    if runner_up is None:
        return f"{best.model} is the only usable model of tier {tier}"
    edge = max(DIMENSIONS, key=lambda d: best.contributions[d] - runner_up.contributions[d])
    return (f"{best.model} ranks first of tier {tier} with {best.total:.3f} against {runner_up.model}'s "
            f"{runner_up.total:.3f}; its largest edge is {edge} "
            f"(+{best.contributions[edge] - runner_up.contributions[edge]:.3f})")
