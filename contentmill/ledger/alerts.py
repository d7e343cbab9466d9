"""The engine that runs the alert rules (rules.py) and delivers what they raise.

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
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from contentmill.errors import LedgerError
from contentmill.ledger.records import Alert, CallRecord, as_utc, utcnow
from contentmill.ledger.rules import PeriodicRule, RecordRule, default_rules
from contentmill.ledger.sinks import AlertSink, Delivery, LogSink
from contentmill.ledger.store import LedgerStore

log = logging.getLogger("contentmill.alerts")

DEFAULT_COOLDOWN = timedelta(hours=1)


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
