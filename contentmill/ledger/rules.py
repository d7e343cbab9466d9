"""The alert rules: what is worth telling an operator about one call, or about the ledger as it stands.

A ``RecordRule`` looks at one call as it is recorded (``AlertEngine.observe``, on the gateway's path, so it must
be cheap); a ``PeriodicRule`` queries the ledger (``AlertEngine.evaluate``, run on a schedule). Each returns the
alerts it would raise; the engine (alerts.py) deduplicates, stores and delivers them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar

from contentmill.ledger.anomaly import BUCKET_LENGTH, AnomalyConfig, Metric, scan
from contentmill.ledger.forecast import RECENT_WEIGHT, RECENT_WINDOW, forecast_budget, period_bounds
from contentmill.ledger.records import USAGE_PROBLEM_TAG, Alert, CallRecord
from contentmill.ledger.report import report
from contentmill.ledger.store import LedgerStore


class RecordRule(ABC):
    """Judges one call record, without I/O."""

    name: ClassVar[str]

    @property
    def cooldown(self) -> timedelta | None:
        """How long the same subject stays quiet after firing; None takes the engine's."""
        return None

    @abstractmethod
    def check(self, record: CallRecord) -> Alert | None: ...


class PeriodicRule(ABC):
    """Judges the ledger as of ``now``."""

    name: ClassVar[str]

    @property
    def cooldown(self) -> timedelta | None:
        """How long the same subject stays quiet after firing; None takes the engine's."""
        return None

    @abstractmethod
    def evaluate(self, store: LedgerStore, now: datetime) -> list[Alert]: ...


def _who(record: CallRecord) -> str:
    """The model and the team/project/job tags: who to ask about a call."""
    tags = " ".join(f"{k}={record.tags[k]}" for k in ("team", "project", "job") if k in record.tags)
    return f"{record.model} {tags}".strip()


@dataclass
class LargeGeneration(RecordRule):
    """One call used ``tokens`` or more (input + output; the estimate when the provider never answered)."""

    tokens: int = 5_000
    name: ClassVar[str] = "large_generation"

    def check(self, record: CallRecord) -> Alert | None:
        if record.outcome not in ("ok", "error", "orphaned") or record.tokens < self.tokens:
            return None
        return Alert(
            rule=self.name, severity="warning", subject=_who(record), ts=record.ts,
            message=f"one {record.model} call used {record.tokens:,} tokens (alert at {self.tokens:,})",
            data={"call_id": record.id, "tokens": record.tokens, "cost_usd": record.cost_usd, **record.tags},
        )


@dataclass
class ModelUnpriced(RecordRule):
    """The gateway refused a model that has no price in the catalog: someone is trying to use it."""

    name: ClassVar[str] = "model_unpriced"

    def check(self, record: CallRecord) -> Alert | None:
        if record.outcome != "refused" or record.error_type != "UnpricedModel":
            return None
        return Alert(
            rule=self.name, severity="warning", subject=record.model, ts=record.ts,
            message=f"{record.model} was refused because it has no price: add it to the catalog file",
            data={"call_id": record.id, **record.tags},
        )


@dataclass
class UsageRejected(RecordRule):
    """A vendor reported usage that cannot be what the call used (negative, not a number, past what the call
    could have sent or produced): the call was billed at its estimate, and the vendor's invoice may disagree."""

    name: ClassVar[str] = "usage_rejected"

    def check(self, record: CallRecord) -> Alert | None:
        figures = record.vendor_usage
        if figures is None or not record.flagged:
            return None
        problem = record.tags.get(USAGE_PROBLEM_TAG, "")
        return Alert(
            rule=self.name, severity="warning", subject=_who(record), ts=record.ts,
            message=(f"{record.model} reported usage {figures} that cannot be billed ({problem}); the call was "
                     f"billed at its estimate, {record.cost_usd:.6f} USD, marked estimated: check the vendor's "
                     f"invoice"),
            data={"call_id": record.id, "cost_usd": record.cost_usd, "outcome": record.outcome, **record.tags},
        )


@dataclass
class BudgetUsed(PeriodicRule):
    """A budget's period spend reached its soft threshold (``pct`` overrides each budget's ``soft_pct``)."""

    pct: float | None = None
    name: ClassVar[str] = "budget_used"

    def evaluate(self, store: LedgerStore, now: datetime) -> list[Alert]:
        fired = []
        for budget in store.budgets():
            start, _end = period_bounds(budget.period, budget.zone, now)
            spent = store.spent(budget.scope_key, budget.scope_value, start, now)
            used = 100.0 * spent / budget.limit_usd
            threshold = self.pct if self.pct is not None else budget.soft_pct
            if used < threshold:
                continue
            exhausted = used >= 100.0
            fired.append(Alert(
                rule=self.name, severity="critical" if exhausted else "warning", ts=now,
                subject=f"{budget.name}:{'exhausted' if exhausted else 'soft'}@{start.isoformat()}",
                message=f"budget {budget.name} is {used:.1f}% used: {spent:.4f} of {budget.limit_usd:.4f}",
                data={
                    "budget": budget.name, "spent_usd": spent, "limit_usd": budget.limit_usd,
                    "used_pct": used,
                },
            ))
        return fired


@dataclass
class ForecastOverBudget(PeriodicRule):
    """The period-end forecast exceeds a budget not yet exhausted (judged once ``min_elapsed`` has passed)."""

    recent_window: timedelta = RECENT_WINDOW
    recent_weight: float = RECENT_WEIGHT
    min_elapsed: float = 0.05
    name: ClassVar[str] = "forecast_over_budget"

    def evaluate(self, store: LedgerStore, now: datetime) -> list[Alert]:
        fired = []
        for budget in store.budgets():
            forecast = forecast_budget(
                store, budget, now, recent_window=self.recent_window, recent_weight=self.recent_weight
            )
            if forecast.elapsed_fraction < self.min_elapsed or not forecast.over_budget:
                continue
            if forecast.spent_usd >= budget.limit_usd:
                continue  # already exhausted: BudgetUsed says so
            days = forecast.days_until_exhausted
            when = f"in {days:.1f} days" if days is not None else "never"
            fired.append(Alert(
                rule=self.name, severity="warning", ts=now,
                subject=f"{budget.name}@{forecast.period_start.isoformat()}",
                message=(
                    f"budget {budget.name} is forecast to reach {forecast.projected_usd:.4f} USD by "
                    f"{forecast.period_end.isoformat()} (limit {budget.limit_usd:.4f}); exhausted {when}"
                ),
                data={"budget": budget.name, **forecast.as_dict()},
            ))
        return fired


@dataclass
class ErrorRate(PeriodicRule):
    """More than ``max_pct`` of calls that reached a provider failed in the last ``window``, per ``by``."""

    max_pct: float = 10.0
    window: timedelta = timedelta(minutes=15)
    min_calls: int = 20
    by: str = "model"
    name: ClassVar[str] = "error_rate"

    def evaluate(self, store: LedgerStore, now: datetime) -> list[Alert]:
        fired = []
        for row in report(store, self.by, now - self.window, now).rows:
            attempts = row["calls"] - row["cache_hits"] - row["refused"]
            failed = row["errors"] + row["orphaned"]
            if attempts < self.min_calls or 100.0 * failed / attempts <= self.max_pct:
                continue
            rate = 100.0 * failed / attempts
            minutes = self.window.total_seconds() / 60
            fired.append(Alert(
                rule=self.name, severity="critical" if rate >= 50 else "warning", ts=now,
                subject=f"{self.by}={row[self.by]}",
                message=f"{self.by}={row[self.by]}: {rate:.1f}% of {attempts} calls failed in {minutes:.0f}m",
                data={"by": self.by, "value": row[self.by], "calls": attempts, "failed": failed, "pct": rate},
            ))
        return fired


@dataclass
class SpendAnomaly(PeriodicRule):
    """A tag value's token or spend rate in the current or last bucket is a z-score outlier (anomaly.py)."""

    by: str = "team"
    metric: Metric = "tokens"
    bucket: str = "hour"
    config: AnomalyConfig = field(default_factory=AnomalyConfig)
    name: ClassVar[str] = "anomaly"

    @property
    def cooldown(self) -> timedelta:
        """A bucket is judged while it is current and once more after: one alert per anomalous bucket."""
        return BUCKET_LENGTH[self.bucket] * 2

    def evaluate(self, store: LedgerStore, now: datetime) -> list[Alert]:
        fired = []
        for hit in scan(store, self.by, now, metric=self.metric, bucket=self.bucket, config=self.config):
            assert hit.bucket is not None
            unit = "USD" if self.metric == "cost" else "tokens"
            fired.append(Alert(
                rule=self.name, severity="warning", ts=now,
                subject=f"{self.by}={hit.subject}/{self.metric}@{hit.bucket.isoformat()}",
                message=(
                    f"{self.by}={hit.subject} used {hit.value:,.6g} {unit} in the {self.bucket} from "
                    f"{hit.bucket.isoformat()}: {hit.ratio:.1f}x its recent mean {hit.mean:,.6g} "
                    f"(z={hit.z:.1f})"
                ),
                data={
                    "by": self.by, "value": hit.subject, "metric": self.metric,
                    "bucket": hit.bucket.isoformat(),
                    "amount": hit.value, "mean": hit.mean, "std": hit.std, "z": hit.z,
                },
            ))
        return fired


@dataclass
class OrphanCharged(RecordRule):
    """A call's process died mid-call: its reservation was charged as reserved, and the vendor may have billed
    less (or, if the answer came back unrecorded, the same): worth a look."""

    name: ClassVar[str] = "orphan_charged"

    def check(self, record: CallRecord) -> Alert | None:
        if record.outcome != "orphaned":
            return None
        return Alert(
            rule=self.name, severity="warning", subject=_who(record), ts=record.ts,
            message=(f"a {record.model} call's process stopped mid-call; its reservation was charged as reserved, "
                     f"{record.cost_usd:.6f} USD (outcome orphaned, flagged)"),
            data={"call_id": record.id, "cost_usd": record.cost_usd, **record.tags},
        )


def default_rules() -> list[RecordRule | PeriodicRule]:
    """Every rule with its default configuration."""
    return [
        LargeGeneration(), ModelUnpriced(), UsageRejected(), OrphanCharged(), BudgetUsed(), ForecastOverBudget(),
        ErrorRate(), SpendAnomaly(),
    ]
