"""Money in one place: every call that can cost money is claimed, reserved, billed, settled and recorded here.

The online call and the stream (core.py) and the Batch API (batch.py) all pass one ``Meter``:

    claims    what each limit that applies may take (policy.py: vendor rpm/tpm, rate limits, quotas, budgets)
    reserve   every claim at once, atomically (admission*.py), each budget window first seeded from what the
              ledger says it spent; journalled when admission is in-process, so a killed process leaves a
              trace that the next sweep charges
    bill      the vendor's usage, checked against the most the call could have used before it is billed;
              otherwise the reserved estimate, flagged, with the vendor's figures kept (billing.py)
    settle    the reservation at what was billed, once; while the limits' store cannot be reached the
              settlement waits in this process and is tried again before each later one, each sweep and at close
    record    one ledger row per call: answered, failed, refused, served from the cache, or orphaned

Invariants: a provider is called only while a reservation of the most the call can cost is held; every
reservation ends settled or swept (charged as reserved, flagged); a paid call's row is written even when its
settlement failed. A call's ``latency_s`` is the provider's time; the wait for admission is ``waited_s``, kept
in its own ledger column so the router's latency figures are the vendor's, not our limits'.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contentmill.catalog import ModelInfo
from contentmill.errors import (
    AdmissionUnavailable,
    BudgetExceeded,
    ContentmillError,
    ProviderError,
    RateLimited,
)
from contentmill.gateway.admission import Admission, Claim, MemoryAdmission, Refusal, Reservation
from contentmill.gateway.admission_fallback import FallbackAdmission
from contentmill.gateway.admission_redis import RedisAdmission
from contentmill.gateway.admission_sqlite import SQLiteAdmission
from contentmill.gateway.billing import Bill, Call
from contentmill.gateway.generation import Codec, Generation
from contentmill.gateway.journal import ReservationJournal
from contentmill.gateway.policy import CallFacts, Policy
from contentmill.gateway.retry import RetryPolicy
from contentmill.ledger import (
    Alert,
    AlertEngine,
    AlertSink,
    CallRecord,
    LedgerSpool,
    LedgerStore,
    LedgerWriter,
    LogSink,
    PrefectArtifactSink,
    WebhookSink,
    settings_url,
)
from contentmill.metering import Usage
from contentmill.settings import Settings

log = logging.getLogger("contentmill.gateway")
STREAM_RENEWAL_LIMIT_S = 86400.0  # a stream still open after a day has been abandoned: its reservation may go
ROW_KEPT_WAIT_S = 30.0  # how long a background settlement waits for the ledger to keep the call's row


class Meter:
    """Claims, reservations, settlement and the ledger for one gateway. Parts not given are built from the
    settings and closed by ``aclose``; what the caller passes in stays the caller's to close."""

    def __init__(self, settings: Settings, *, retry: RetryPolicy, admission: Admission | None = None,
                 store: LedgerStore | None = None, policy: Policy | None = None, alerts: AlertEngine | None = None,
                 settle_in_background: bool = False) -> None:
        """``settle_in_background``: an answered call is settled and recorded after its answer goes back to
        the caller (the server sends it on at once); the reservation holds what was reserved until then."""
        self.settings = settings
        self.retry = retry
        self._owned = {name for name, given in (("admission", admission), ("store", store), ("alerts", alerts))
                       if given is None}
        self.store = store or LedgerStore(settings_url(settings))
        self.ledger = LedgerWriter(self.store, spool=LedgerSpool.for_settings(settings), on_written=self._rows_kept)
        # Answered calls whose settlement waits for the ledger to keep their row, by id() of the row: the entry
        # holds its row, so an id seen in a written batch is that row's own.
        self._after_rows: dict[int, _AfterRow] = {}
        self._overdue_checks: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}
        self._closing = 0  # background closes whose row is not queued yet
        self.policy = policy or Policy.from_settings(settings, self.store.budgets())
        self.alerts = alerts if alerts is not None else AlertEngine(self.store, sinks=alert_sinks(settings))
        self.admission = admission or self._built_admission()
        self.journal = (ReservationJournal(settings.data_dir / "reservations.journal")
                        if isinstance(self.admission, MemoryAdmission) else None)
        self._seeded: set[str] = set()
        self._unsettled: list[tuple[Reservation, list[float]]] = []  # settlements the store could not take yet
        self._settling = asyncio.Lock()
        self._sweeping = asyncio.Lock()
        self._monitor: asyncio.Task[None] | None = None
        self._settle_in_background = settle_in_background
        self._settlements: set[asyncio.Task[None]] = set()

    # -- rows ---------------------------------------------------------------------------------------------

    def record(self, record: CallRecord) -> None:
        self.ledger.put(record)
        self.alerts.observe(record)

    def _rows_kept(self, batch: list[CallRecord]) -> None:
        """In the writer's thread: the settlements that waited for a row of ``batch`` go to their event loop,
        one callback per loop and batch."""
        if not self._after_rows:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[_AfterRow]] = {}
        for record in batch:
            waiting = self._after_rows.pop(id(record), None)  # popped once: here, or as overdue in the loop
            if waiting is not None:
                by_loop.setdefault(waiting.loop, []).append(waiting)
        for loop, kept in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed: its reservations go to the sweep
                loop.call_soon_threadsafe(self._settle_after_rows, kept)

    def refused(self, error: ContentmillError, info: ModelInfo, estimate: Usage, tags: Mapping[str, str]
                ) -> ContentmillError:
        """Record a call stopped before any provider was paid; returns the error to raise."""
        self.record(CallRecord.from_error(error, model=info.name, api_type=info.modality, estimate=estimate,
                                          tags=tags))
        return error

    def hit(self, codec: Codec, value: Any, call: Call, saved: float, tier: str) -> Generation:
        """The answer ``call`` finds in the cache (``value``, kept by ``codec``), recorded as a hit: charged
        nothing, ``saved`` saved."""
        gen = codec.decode(value, call.info.name, call.estimate).as_hit(saved, tier, call.tags)
        self.record(CallRecord.from_generation(gen, api_type=call.info.modality, request_hash=call.request_hash,
                                               cache_status=f"hit:{tier}", saved_usd=saved))
        return gen

    # -- admission -------------------------------------------------------------------------------------------

    async def open(self, call: Call, account: str, wait_s: float | None) -> None:
        """Claim every limit that applies and reserve them at once, waiting for bucket capacity up to ``wait_s``
        (the settings' default when None); a refusal is recorded and raised."""
        call.metered = self.policy.claims(CallFacts(call.info, account, call.tags), call.estimate, call.reserved_usd,
                                          time.time(), call.limits)
        claims = [m.claim for m in call.metered]
        began = time.monotonic()
        deadline = began + (self.settings.admission_wait_s if wait_s is None else wait_s)
        payload = call.payload()
        try:
            while True:
                outcome = await self.reserve(claims, ttl_s=self.reservation_ttl(), payload=payload)
                if isinstance(outcome, Reservation):
                    call.reservation = outcome
                    call.waited_s = time.monotonic() - began
                    return
                left = deadline - time.monotonic()
                if outcome.retry_after is None or outcome.retry_after > left:
                    raise refusal_error(outcome)
                await asyncio.sleep(max(outcome.retry_after, 0.001))
        except ContentmillError as error:
            raise self.refused(error, call.info, call.estimate, call.tags) from None

    async def reserve(self, claims: Sequence[Claim], *, ttl_s: float, payload: str) -> Reservation | Refusal:
        """Reserve ``claims`` at once, or say which one refused; budget windows are seeded from the ledger first."""
        await self._seed_budgets(claims)
        outcome = await self.admission.acquire(claims, ttl_s=ttl_s, payload=payload)
        if isinstance(outcome, Reservation) and self.journal is not None:
            self.journal.opened(outcome)
        return outcome

    def reservation_ttl(self) -> float:
        """Longer than a call's attempts can last: each ends at the timeout (its whole answer included) and the
        waits between them are capped. A stream, whose length no timeout bounds, renews it (``keep``)."""
        timeout, retries = self.settings.request_timeout_s, self.settings.max_retries
        return timeout * (retries + 1) + self.retry.max_delay_s * retries + max(5.0, timeout)

    def keep(self, call: Call) -> None:
        """Renew a stream's reservation while it is read (the reader sets its pace), until it is settled."""
        assert call.reservation is not None
        call.keeper = asyncio.get_running_loop().create_task(self._keep_alive(call.reservation))

    async def _keep_alive(self, reservation: Reservation) -> None:
        """Renew every third of the time to live, so no sweep takes the reservation while the stream is read."""
        ttl = self.reservation_ttl()
        until = time.monotonic() + STREAM_RENEWAL_LIMIT_S
        while time.monotonic() < until:
            await asyncio.sleep(ttl / 3)
            try:
                if not await self.admission.extend(reservation, ttl):
                    return
            except AdmissionUnavailable as exc:
                log.warning("could not renew reservation %s: %s", reservation.id, exc)
                continue
            if self.journal is not None:
                self.journal.opened(reservation)  # the latest line of a reservation is the one that counts

    async def _seed_budgets(self, claims: Sequence[Claim]) -> None:
        """Start each budget window this process has not seen from what the ledger says it spent, so a restart
        (or a budget set mid-period) never forgets money already spent."""
        for claim in claims:
            if claim.key in self._seeded:
                continue
            spent = await self._ledger_spent(claim)
            if spent is None:
                continue
            await self.admission.seed(claim, spent)
            self._seeded.add(claim.key)

    async def _ledger_spent(self, claim: Claim) -> float | None:
        """What the ledger says a budget's window has spent so far; None for a claim that is not a budget."""
        where = self.policy.windows.get(claim.key)
        if where is None:
            return None
        scope_key, scope_value, start = where
        return float(await asyncio.to_thread(self.store.spent, scope_key, scope_value, start, datetime.now(UTC)))

    def _built_admission(self) -> Admission:
        """SQLite in the data directory without Redis; with Redis, Redis, and while it is down what
        CONTENTMILL_ON_REDIS_DOWN says (admission_fallback.py)."""
        s = self.settings
        if not s.redis_url:
            return SQLiteAdmission(s.data_dir / "admission.sqlite3")
        redis = RedisAdmission.from_url(s.redis_url, prefix=s.redis_prefix + "adm:")
        if s.on_redis_down == "refuse":
            return redis
        return FallbackAdmission(redis, SQLiteAdmission(s.data_dir / "admission.sqlite3"),
                                 share=s.redis_down_share, seeder=self._ledger_spent, on_down=self._redis_down)

    def _redis_down(self, reason: str) -> None:
        log.error("%s; admitting against this machine's limits (CONTENTMILL_ON_REDIS_DOWN=local)", reason)
        self.alerts.raise_alert(Alert(
            "redis_down", "critical", "redis",
            f"{reason}. Calls go on against this machine's limits with {self.settings.redis_down_share:.0%} of "
            "what each budget had left (CONTENTMILL_REDIS_DOWN_SHARE) until Redis answers again."))

    # -- settlement ----------------------------------------------------------------------------------------

    async def settle(self, call: Call, usage: Usage, cost: float) -> None:
        """Settle the call's reservation at what it was billed (nothing held for a call that never reserved)."""
        await self.settle_many([(call, usage, cost)])

    async def settle_many(self, calls: Sequence[tuple[Call, Usage, float]]) -> None:
        """``settle`` for several calls, in one exchange with the limits' store."""
        settlements = []
        for call, usage, cost in calls:
            if call.keeper is not None:
                call.keeper.cancel()
            if call.reservation is not None:
                settlements.append((call.reservation, [m.actual(usage, cost) for m in call.metered]))
        await self.reconcile_many(settlements)

    async def reconcile(self, reservation: Reservation, actual: Sequence[float]) -> None:
        """Settle ``reservation`` at ``actual`` (one amount per claim). When the limits' store cannot be reached
        the answer, already paid, is still returned and recorded: the settlement waits in this process."""
        await self.reconcile_many([(reservation, actual)])

    async def reconcile_many(self, settlements: Sequence[tuple[Reservation, Sequence[float]]]) -> None:
        """``reconcile`` for several reservations at once; those the store cannot take wait in this process
        (settling one twice is a no-op, so those it took before failing are harmless to try again)."""
        if not settlements:
            return
        await self._settle_waiting()
        try:
            await self.admission.reconcile_many(settlements)
        except AdmissionUnavailable as exc:
            self._unsettled += [(reservation, list(actual)) for reservation, actual in settlements]
            log.warning("%d settlement(s) wait for the limits' store: %s", len(self._unsettled), exc)
            return
        if self.journal is not None:
            for reservation, _ in settlements:
                self.journal.settled(reservation.id)

    async def _settle_waiting(self) -> None:
        if not self._unsettled:
            return
        async with self._settling:
            while self._unsettled:
                reservation, actual = self._unsettled[0]
                try:
                    await self.admission.reconcile(reservation, actual)
                except AdmissionUnavailable:
                    return
                self._unsettled.pop(0)
                if self.journal is not None:
                    self.journal.settled(reservation.id)

    async def close(self, call: Call, billed: Bill, row: Callable[[], CallRecord]) -> None:
        """Settle an answered call at what it is billed and write its ledger row (``row``, built late so a
        background close does not slow the answer).

        With ``settle_in_background`` both happen after the caller has the answer, and the row goes first: the
        reservation is settled only once the ledger keeps the row (the settlements of one written batch go to
        the limits' store together). A process killed in between leaves the reservation open, and the sweep
        that finds it charges it as reserved but writes no second row for it (``sweep_orphans``); settled
        first, a kill before the writer's round lost the row of a paid call."""
        if not self._settle_in_background:
            try:
                await self.settle(call, billed.usage, billed.cost_usd)
            finally:
                self.record(row())  # paid for: the row is written whatever became of the settlement
            return
        # Two turns of the loop: the answer's write, queued in this one, goes out before the row is built.
        loop = asyncio.get_running_loop()
        self._closing += 1
        loop.call_soon(loop.call_soon, self._record_then_settle, call, billed, row, loop)

    def _record_then_settle(self, call: Call, billed: Bill, row: Callable[[], CallRecord],
                            loop: asyncio.AbstractEventLoop) -> None:
        self._closing -= 1
        record = row()
        self._after_rows[id(record)] = _AfterRow(call, billed, record, loop, time.monotonic())
        if loop not in self._overdue_checks:
            self._overdue_checks[loop] = loop.call_later(ROW_KEPT_WAIT_S, self._settle_overdue, loop)
        self.record(record)

    def _settle_overdue(self, loop: asyncio.AbstractEventLoop, everything: bool = False) -> None:
        """Settle the calls of ``loop`` whose row the ledger has not kept in ``ROW_KEPT_WAIT_S`` (the store and
        the spool both refuse it), or all of them (``everything``), with a warning; check again when the next
        one would be overdue."""
        check = self._overdue_checks.pop(loop, None)
        if check is not None:
            check.cancel()
        now = time.monotonic()
        overdue, oldest = [], None
        for key, waiting in list(self._after_rows.items()):
            if waiting.loop is not loop:
                continue
            if everything or now - waiting.since >= ROW_KEPT_WAIT_S:
                if self._after_rows.pop(key, None) is not None:  # not taken by the writer meanwhile
                    overdue.append(waiting)
            elif oldest is None or waiting.since < oldest:
                oldest = waiting.since
        if overdue:
            log.warning("the ledger has not kept %d call row(s) after %.0f s; settling their reservations anyway",
                        len(overdue), ROW_KEPT_WAIT_S)
            self._settle_after_rows(overdue)
        if oldest is not None:
            self._overdue_checks[loop] = loop.call_later(oldest + ROW_KEPT_WAIT_S - now, self._settle_overdue, loop)

    def _settle_after_rows(self, kept: list[_AfterRow]) -> None:
        task = asyncio.get_running_loop().create_task(self.settle_many(
            [(w.call, w.billed.usage, w.billed.cost_usd) for w in kept]))
        self._settlements.add(task)
        task.add_done_callback(self._closed)

    def _closed(self, task: asyncio.Task[None]) -> None:
        """Calls closed in the background; a settlement that failed is said (its reservations stay held until
        swept, charged as reserved, so no budget is passed)."""
        self._settlements.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("settling paid calls failed: %r", task.exception())

    async def fail(self, call: Call, error: BaseException, *, latency_s: float, retries: int) -> None:
        """Settle and record a call whose provider failed (billed only for an unusable answer that reports
        usage); a call stopped otherwise (cancelled) delivered nothing and is released unrecorded."""
        if not isinstance(error, ProviderError):
            await self.settle(call, Usage(), 0.0)
            return
        billed, record = call.failed(error, latency_s=latency_s, retries=retries)
        await self.settle(call, billed.usage if billed else Usage(), billed.cost_usd if billed else 0.0)
        self.record(record)

    # -- orphans, monitoring and closing ---------------------------------------------------------------------

    async def sweep_orphans(self, now: float | None = None) -> list[CallRecord]:
        """Charge reservations whose worker died mid-call at their reserved amount, flagged in the ledger."""
        await self._settle_waiting()  # this process's own calls are not orphans
        orphans = await self.admission.orphans(now)
        if self.journal is not None:  # the same reservation may be in both: it is charged once
            taken = {r.id for r in orphans}
            orphans += [r for r in self.journal.orphans(time.time() if now is None else now) if r.id not in taken]
        if orphans:  # a process killed after its row was kept and before settling: charged, not written again
            recorded = await asyncio.to_thread(self.store.recorded_reservations, [r.id for r in orphans])
            orphans = [r for r in orphans if r.id not in recorded]
        records = [_orphan_record(r) for r in orphans]
        if records:
            self.store.write_calls(records)
            for record in records:
                self.alerts.observe(record)
        return records

    def watch(self) -> None:
        """Start the periodic rules (budget used, forecast, error rate, anomalies) and the orphan sweep."""
        if self._monitor is None and self.settings.monitor_interval_s > 0:
            self._monitor = asyncio.get_running_loop().create_task(self._monitor_loop())

    async def _monitor_loop(self) -> None:
        """A sweep at once (a short CLI call charges what a killed run left), then the rules and a sweep each
        interval. ``drain`` waits for a sweep under way: orphans taken off the books are always recorded."""
        evaluate = False
        while True:
            async with self._sweeping:
                try:
                    await self.sweep_orphans()
                    if evaluate:
                        await asyncio.to_thread(self.alerts.evaluate)
                except ContentmillError as exc:
                    log.warning("monitoring round failed: %s", exc)
            evaluate = True
            await asyncio.sleep(self.settings.monitor_interval_s)

    async def drain(self) -> None:
        """Finish every settlement under way or waiting, and stop the monitor."""
        loop = asyncio.get_running_loop()
        waited = time.monotonic()
        # Calls closed in the background: rows still being queued, then kept by the writer's next round.
        while self._closing or any(w.loop is loop for w in list(self._after_rows.values())):
            if time.monotonic() - waited >= ROW_KEPT_WAIT_S:
                self._settle_overdue(loop, everything=True)  # warns and settles them
                break
            await asyncio.sleep(0.02)
        check = self._overdue_checks.pop(loop, None)
        if check is not None:
            check.cancel()
        while self._settlements:
            await asyncio.wait(set(self._settlements))
        await self._settle_waiting()
        if self._unsettled:
            log.error("%d paid call(s) could not be settled with the limits' store before closing: their "
                      "reservations stay held until swept, charged as reserved", len(self._unsettled))
        if self._monitor is not None:
            async with self._sweeping:
                self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None

    async def aclose(self) -> None:
        await self.drain()
        if "admission" in self._owned:
            await self.admission.aclose()
        if self.journal is not None:
            self.journal.close()
        try:
            self.ledger.close()  # writes what is queued (or spools it), whoever owns the store
        finally:  # CostNotRecorded still closes the rest
            if "alerts" in self._owned:
                self.alerts.close()
            if "store" in self._owned:
                self.store.close()


def alert_sinks(settings: Settings) -> list[AlertSink]:
    """The log always; a webhook when CONTENTMILL_ALERT_WEBHOOK_URL is set; an artifact inside a Prefect run."""
    sinks: list[AlertSink] = [LogSink(), PrefectArtifactSink()]
    if settings.alert_webhook_url is not None:
        sinks.append(WebhookSink(settings.alert_webhook_url))
    return sinks


def refusal_error(refusal: Refusal) -> ContentmillError:
    claim = refusal.claim
    if claim.key.startswith("budget:"):
        return BudgetExceeded(claim.label, refusal.used, refusal.reserved, claim.limit, claim.amount)
    unit = "" if claim.kind == "bucket" else " (period quota)"
    return RateLimited(
        f"{claim.label}{unit}: {claim.amount:g} asked, {max(refusal.available, 0):g} available of {claim.limit:g}"
        + (f"; retry in {refusal.retry_after:.2f} s" if refusal.retry_after is not None else ""),
        retry_after=refusal.retry_after,
    )


@dataclass(slots=True)
class _AfterRow:
    """An answered call whose reservation is settled once the ledger keeps its row."""

    call: Call
    billed: Bill
    row: CallRecord  # held, so its id() is not reused while the writer may report it
    loop: asyncio.AbstractEventLoop
    since: float


def _orphan_record(reservation: Reservation) -> CallRecord:
    data = json.loads(reservation.payload or "{}")
    reserved = float(data.get("reserved_usd", 0.0))
    return CallRecord(
        model=data.get("model", "unknown:unknown"), api_type=data.get("api_type", "text"),
        estimate=Usage.from_dict(data.get("estimate", {})), outcome="orphaned", cost_usd=reserved,
        reserved_usd=reserved, error_type="ReservationExpired", request_hash=data.get("request_hash", ""),
        reservation_id=reservation.id, tags=data.get("tags", {}), flagged=True,
    )

