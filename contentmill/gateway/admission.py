"""Admission: token buckets, period counters (quotas and budgets) and reservations, all-or-nothing.

A call names every limit that applies to it as a *claim*; it is admitted only if every claim has room, and then
all of them are charged at once. What was charged is a reservation: the actual usage reconciles it later
(refund, or a further charge), and a reservation never reconciled (its worker died) is swept and kept at the
reserved amount. Three backends share this interface: in-process (``MemoryAdmission``), a SQLite file in the data
directory (``contentmill.gateway.admission_sqlite.SQLiteAdmission``, one ``BEGIN IMMEDIATE`` transaction per
admission, so limits hold across every process on the machine) and Redis
(``contentmill.gateway.admission_redis.RedisAdmission``, one Lua script round trip per admission, so limits hold
across every process and worker on every machine).

Buckets refill continuously (``limit`` per ``period_s``), as OpenAI's RPM/TPM limits do, and never go below zero.
Counters are fixed calendar windows (a day, a week, a month in a time zone) whose key names the window, so a new
period starts from zero by itself. A counter holds ``used`` (spent + reserved) and ``reserved``; admission needs
``used + amount <= limit``, so concurrent callers can never push a hard limit past its value.
"""

from __future__ import annotations

import json
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from contentmill.ids import ordered_id

ClaimKind = Literal["bucket", "counter"]


@dataclass(frozen=True, slots=True)
class Claim:
    """Room asked of one limit. A bucket holds ``limit`` per ``period_s``; a counter at most ``limit`` per window
    (``math.inf`` when it is only counted) and its key lives ``ttl_s`` (the rest of its window, plus slack)."""

    key: str
    kind: ClaimKind
    amount: float
    limit: float
    period_s: float = 60.0
    ttl_s: float = 0.0
    label: str = ""  # what a refusal names, e.g. "budget team=shop per day" or "tpm openai:gpt-4o"

    @property
    def rate(self) -> float:
        return self.limit / self.period_s

    def as_list(self) -> list[Any]:
        return [self.key, self.kind, self.amount, _finite(self.limit), self.period_s, self.ttl_s, self.label]

    @classmethod
    def from_list(cls, raw: Sequence[Any]) -> Claim:
        key, kind, amount, limit, period_s, ttl_s, label = raw
        return cls(key, kind, float(amount), math.inf if limit is None else float(limit), float(period_s),
                   float(ttl_s), label)


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else value


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call was not admitted; ``retry_after`` is None when waiting cannot help (a counter is full, or the
    call asks more than the bucket can ever hold)."""

    claim: Claim
    available: float
    used: float
    reserved: float
    retry_after: float | None


@dataclass(slots=True)
class Reservation:
    id: str
    claims: tuple[Claim, ...]
    deadline: float  # wall-clock time after which an unreconciled reservation is an orphan
    payload: str = ""  # what a sweeper needs to record it (JSON: model, estimate, cost, tags)
    created: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return orjson.dumps({"id": self.id, "claims": [c.as_list() for c in self.claims], "deadline": self.deadline,
                             "payload": self.payload, "created": self.created}).decode()

    @classmethod
    def from_json(cls, raw: str | bytes) -> Reservation:
        data = json.loads(raw)
        claims = tuple(Claim.from_list(c) for c in data["claims"])
        return cls(data["id"], claims, float(data["deadline"]), data.get("payload", ""), float(data["created"]))


class Admission(ABC):
    """The interface both backends implement."""

    @abstractmethod
    async def acquire(self, claims: Sequence[Claim], *, ttl_s: float, payload: str = "") -> Reservation | Refusal:
        """Charge every claim or none; on success the reservation is kept until reconciled or swept."""

    @abstractmethod
    async def reconcile(self, reservation: Reservation, actual: Sequence[float]) -> bool:
        """Settle with the actual amount of each claim (same order); False if it was already settled or swept."""

    async def reconcile_many(self, settlements: Sequence[tuple[Reservation, Sequence[float]]]) -> list[bool]:
        """``reconcile`` each (reservation, actual amounts) in order; a backend may send them in one exchange.
        If it raises, those settled before it stay settled (settling again is a no-op: False)."""
        return [await self.reconcile(reservation, actual) for reservation, actual in settlements]

    @abstractmethod
    async def extend(self, reservation: Reservation, ttl_s: float) -> bool:
        """Keep a live call's reservation from being swept: its deadline moves to ``ttl_s`` from now. False if it
        was already settled or swept."""

    @abstractmethod
    async def levels(self, claims: Sequence[Claim]) -> list[tuple[float, float]]:
        """(available, reserved) of each claim's limit now: bucket tokens, or room left in a counter's window."""

    @abstractmethod
    async def orphans(self, now: float | None = None) -> list[Reservation]:
        """Take reservations past their deadline off the books, keeping them charged as reserved."""

    @abstractmethod
    async def seed(self, claim: Claim, used: float) -> None:
        """Start a counter that does not exist yet at ``used`` (what the ledger says its window already spent)."""

    async def aclose(self) -> None:
        return None


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


@dataclass(slots=True)
class _Counter:
    used: float = 0.0
    reserved: float = 0.0
    expires: float = math.inf


class Books:
    """The arithmetic of admission over buckets, counters and open reservations kept in dicts. ``MemoryAdmission``
    keeps one set of books in memory; ``SQLiteAdmission`` loads the rows a call touches into one, applies the
    same arithmetic and writes them back, so both backends refuse, charge and settle alike."""

    def __init__(self) -> None:
        self.buckets: dict[str, _Bucket] = {}
        self.counters: dict[str, _Counter] = {}
        self.open: dict[str, Reservation] = {}

    def bucket(self, claim: Claim, now: float) -> _Bucket:
        bucket = self.buckets.get(claim.key)
        if bucket is None:
            bucket = self.buckets[claim.key] = _Bucket(claim.limit, now)
        elif now > bucket.stamp:
            bucket.tokens = min(claim.limit, bucket.tokens + (now - bucket.stamp) * claim.rate)
            bucket.stamp = now
        return bucket

    def counter(self, claim: Claim, now: float) -> _Counter:
        counter = self.counters.get(claim.key)
        if counter is None or now >= counter.expires:
            counter = self.counters[claim.key] = _Counter(expires=now + claim.ttl_s if claim.ttl_s else math.inf)
        return counter

    def refusal(self, claim: Claim, now: float) -> Refusal | None:
        if claim.kind == "bucket":
            tokens = self.bucket(claim, now).tokens
            if claim.amount <= tokens:
                return None
            wait = (claim.amount - tokens) / claim.rate if claim.amount <= claim.limit else None
            return Refusal(claim, tokens, claim.limit - tokens, 0.0, wait)
        counter = self.counter(claim, now)
        if counter.used + claim.amount <= claim.limit:
            return None
        return Refusal(claim, claim.limit - counter.used, counter.used - counter.reserved, counter.reserved, None)

    def charge(self, claim: Claim, amount: float, reserved: float, now: float) -> None:
        if claim.kind == "bucket":
            bucket = self.bucket(claim, now)
            bucket.tokens = min(claim.limit, max(0.0, bucket.tokens - amount))
        else:
            counter = self.counter(claim, now)
            counter.used = max(0.0, counter.used + amount)
            counter.reserved = max(0.0, counter.reserved + reserved)

    def acquire(self, claims: Sequence[Claim], now: float, ttl_s: float, payload: str) -> Reservation | Refusal:
        for claim in claims:
            refusal = self.refusal(claim, now)
            if refusal is not None:
                return refusal
        for claim in claims:
            self.charge(claim, claim.amount, claim.amount, now)
        reservation = Reservation(ordered_id(), tuple(claims), now + ttl_s, payload, now)
        self.open[reservation.id] = reservation
        return reservation

    def settle(self, reservation: Reservation, actual: Sequence[float], now: float) -> None:
        for claim, amount in zip(reservation.claims, actual, strict=True):
            self.charge(claim, amount - claim.amount, -claim.amount, now)

    def levels(self, claims: Sequence[Claim], now: float) -> list[tuple[float, float]]:
        out = []
        for claim in claims:
            if claim.kind == "bucket":
                out.append((self.bucket(claim, now).tokens, 0.0))
            else:
                counter = self.counter(claim, now)
                out.append((claim.limit - counter.used, counter.reserved))
        return out

    def seed(self, claim: Claim, used: float, now: float) -> None:
        existing = self.counters.get(claim.key)
        if existing is None or now >= existing.expires:
            self.counter(claim, now).used = used

    def extend(self, reservation_id: str, deadline: float) -> Reservation | None:
        held = self.open.get(reservation_id)
        if held is not None:
            held.deadline = deadline
        return held

    def take_late(self, now: float) -> list[Reservation]:
        """Open reservations past their deadline, closed and kept charged at their reserved amounts."""
        late = [r for r in self.open.values() if r.deadline <= now]
        for reservation in late:
            del self.open[reservation.id]
            self.settle(reservation, [c.amount for c in reservation.claims], now)
        return late


class MemoryAdmission(Admission):
    """In-process admission; safe across the threads of one process (the data directory's ``SQLiteAdmission``
    holds limits across the processes of a machine, Redis across machines)."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or time.time
        self._lock = threading.Lock()
        self._books = Books()

    async def acquire(self, claims: Sequence[Claim], *, ttl_s: float, payload: str = "") -> Reservation | Refusal:
        with self._lock:
            return self._books.acquire(claims, self._clock(), ttl_s, payload)

    async def reconcile(self, reservation: Reservation, actual: Sequence[float]) -> bool:
        with self._lock:
            if self._books.open.pop(reservation.id, None) is None:
                return False  # already settled or swept: never charge twice
            self._books.settle(reservation, actual, self._clock())
            return True

    async def extend(self, reservation: Reservation, ttl_s: float) -> bool:
        with self._lock:
            held = self._books.extend(reservation.id, self._clock() + ttl_s)
            if held is not None:
                reservation.deadline = held.deadline
            return held is not None

    async def levels(self, claims: Sequence[Claim]) -> list[tuple[float, float]]:
        with self._lock:
            return self._books.levels(claims, self._clock())

    async def seed(self, claim: Claim, used: float) -> None:
        with self._lock:
            self._books.seed(claim, used, self._clock())

    async def orphans(self, now: float | None = None) -> list[Reservation]:
        with self._lock:
            return self._books.take_late(self._clock() if now is None else now)
