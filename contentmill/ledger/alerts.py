"""Alert rules and the engine that runs them.

Two kinds of rule: a ``RecordRule`` looks at one call as it is recorded (``AlertEngine.observe``, on the
gateway's path, so it must be cheap); a ``PeriodicRule`` queries the ledger (``AlertEngine.evaluate``,
run on a schedule). An alert fires once per rule and subject within ``cooldown``: checked in memory
first, then against the stored alerts so several workers do not repeat each other. Alerts raised by
``observe`` are stored and delivered on a background thread, in the caller's context (so a Prefect
artifact lands on the caller's run).
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar

from contentmill.errors import LedgerError
from contentmill.ledger.anomaly import BUCKET_LENGTH, AnomalyConfig, Metric, scan
from contentmill.ledger.forecast import RECENT_WEIGHT, RECENT_WINDOW, forecast_budget, period_bounds
from contentmill.ledger.records import USAGE_PROBLEM_TAG, Alert, CallRecord, as_utc, utcnow
from contentmill.ledger.report import report
from contentmill.ledger.sinks import AlertSink, Delivery, LogSink
from contentmill.ledger.store import LedgerStore

log = logging.getLogger("contentmill.alerts")

DEFAULT_COOLDOWN = timedelta(hours=1)


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


_STOP = object()


class AlertEngine:
    """Runs rules, deduplicates, stores alerts and hands them to the sinks."""

    def __init__(
        self,
        store: LedgerStore,
        rules: Iterable[RecordRule | PeriodicRule] | None = None,
        sinks: Sequence[AlertSink] | None = None,
        *,
        cooldown: timedelta = DEFAULT_COOLDOWN,
    ) -> None:
        chosen = list(default_rules() if rules is None else rules)
        self.store = store
        self.record_rules = [r for r in chosen if isinstance(r, RecordRule)]
        self.periodic_rules = [r for r in chosen if isinstance(r, PeriodicRule)]
        self.sinks: list[AlertSink] = list(sinks) if sinks is not None else [LogSink()]
        self.cooldown = cooldown
        self._last: dict[tuple[str, str], datetime] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[Alert, timedelta, contextvars.Context] | object] = queue.Queue()
        self._thread: threading.Thread | None = None

    def _claim(self, alert: Alert, cooldown: timedelta) -> bool:
        """True if this rule and subject have not fired within the cooldown (as seen by this process)."""
        key = (alert.rule, alert.subject)
        with self._lock:
            last = self._last.get(key)
            if last is not None and abs(alert.ts - last) < cooldown:
                return False
            self._last[key] = alert.ts
            return True

    def _fired_elsewhere(self, alert: Alert, cooldown: timedelta) -> bool:
        """True if the store holds the same alert within the cooldown (another process raised it)."""
        try:
            last = self.store.last_alert_at(alert.rule, alert.subject)
        except LedgerError as exc:
            log.warning("could not check earlier alerts (%s); delivering anyway", exc)
            return False
        if last is None or abs(alert.ts - last) >= cooldown:
            return False
        with self._lock:  # remember when it really fired, so the cooldown ends when it should
            self._last[(alert.rule, alert.subject)] = last
        return True

    def _dispatch(self, alert: Alert, cooldown: timedelta) -> bool:
        """Store and deliver one alert; False when another process already raised it."""
        if self._fired_elsewhere(alert, cooldown):
            return False
        stored = True
        try:
            self.store.add_alert(alert)
        except LedgerError as exc:
            stored = False
            log.error("alert %s could not be stored, delivering it anyway: %s", alert.id, exc)
        delivered: dict[str, Delivery] = {}
        for sink in self.sinks:
            try:
                delivered[sink.name] = sink.deliver(alert)
            except Exception as exc:  # noqa: BLE001 - one broken sink must not stop the others
                log.warning("alert sink %s failed: %s", sink.name, type(exc).__name__)
                delivered[sink.name] = False
        if stored:
            try:
                self.store.set_delivered(alert.id, delivered)
            except LedgerError as exc:
                log.warning("delivery of alert %s not recorded: %s", alert.id, exc)
        return True

    def raise_alert(self, alert: Alert) -> bool:
        """Raise an alert no rule computes (a store gone down, say): stored and delivered in the background,
        once per cooldown; False when it fired within it."""
        if not self._claim(alert, self.cooldown):
            return False
        self._ensure_thread()
        self._queue.put((alert, self.cooldown, contextvars.copy_context()))
        return True

    def observe(self, record: CallRecord) -> list[Alert]:
        """Run the per-record rules on one call and return what fired here; storing, the check against
        alerts other processes stored, and delivery happen in the background."""
        fired = []
        for rule in self.record_rules:
            alert = rule.check(record)
            cooldown = rule.cooldown or self.cooldown
            if alert is not None and self._claim(alert, cooldown):
                fired.append(alert)
                self._ensure_thread()
                self._queue.put((alert, cooldown, contextvars.copy_context()))
        return fired

    def evaluate(self, now: datetime | None = None) -> list[Alert]:
        """Run the periodic rules as of ``now`` and deliver what fires, in this thread."""
        at = as_utc(now or utcnow())
        fired = []
        for rule in self.periodic_rules:
            try:
                alerts = rule.evaluate(self.store, at)
            except LedgerError as exc:
                log.error("alert rule %s could not run: %s", rule.name, exc)
                continue
            cooldown = rule.cooldown or self.cooldown
            fired += [a for a in alerts if self._claim(a, cooldown) and self._dispatch(a, cooldown)]
        return fired

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._deliver_loop, name="contentmill-alerts", daemon=True)
                thread.start()
                self._thread = thread
                atexit.register(self.close)  # alerts raised just before exit are still delivered

    def _deliver_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                assert isinstance(item, tuple)
                alert, cooldown, context = item
                context.run(self._dispatch, alert, cooldown)
            except Exception:  # noqa: BLE001 - the delivery thread must survive any one alert
                log.exception("alert delivery failed")
            finally:
                self._queue.task_done()

    def drain(self) -> None:
        """Wait until every alert raised by ``observe`` so far is stored and delivered."""
        self._queue.join()

    def close(self) -> None:
        """Deliver what is queued, stop the thread and close the sinks."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            atexit.unregister(self.close)
            self._queue.put(_STOP)
            thread.join()
        for sink in self.sinks:
            sink.close()

    def __enter__(self) -> AlertEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
