"""Admission that outlives a Redis outage: Redis while it answers, this machine's SQLite file while it does not.

The services profile keeps limits and budgets in Redis so they hold across machines. When Redis cannot be reached
(``AdmissionUnavailable``), ``CONTENTMILL_ON_REDIS_DOWN`` decides: ``refuse`` refuses the call (nothing is paid),
``local`` (the default) admits it against the data directory's ``SQLiteAdmission`` with a safety margin, so work
goes on while every machine holds back: of what a budget had left when Redis went away (the ledger's spend, read
by ``seeder``), each machine may spend ``share``; quotas and rates get ``share`` of their limits. The first call
of an outage raises an alert (``on_down``). Redis is tried again after ``RETRY_S``, and reservations are settled
where they were made.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from contentmill.errors import AdmissionUnavailable
from contentmill.gateway.admission import Admission, Claim, Refusal, Reservation
from contentmill.gateway.admission_redis import RedisAdmission
from contentmill.gateway.admission_sqlite import SQLiteAdmission

RETRY_S = 5.0  # how long an outage is assumed to last before Redis is asked again


class FallbackAdmission(Admission):
    def __init__(self, primary: RedisAdmission, local: SQLiteAdmission, *, share: float = 0.5,
                 seeder: Callable[[Claim], Awaitable[float | None]] | None = None,
                 on_down: Callable[[str], None] | None = None) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"the share of a limit kept while Redis is down is from 0 to 1 (got {share})")
        self.primary = primary
        self.local = local
        self.share = share
        self._seeder = seeder
        self._on_down = on_down
        self._down_until = 0.0
        self._outage_reported = False
        self._local_ids: set[str] = set()
        self._local_limits: dict[str, float] = {}  # counter key -> its limit on this machine during outages

    @property
    def down(self) -> bool:
        return time.monotonic() < self._down_until

    def _went_down(self, error: AdmissionUnavailable) -> None:
        self._down_until = time.monotonic() + RETRY_S
        if not self._outage_reported:
            self._outage_reported = True
            if self._on_down is not None:
                self._on_down(str(error))

    async def _local_claims(self, claims: Sequence[Claim]) -> list[Claim]:
        """The claims with this machine's share of each limit; a budget's counter starts from the ledger."""
        scaled = []
        for claim in claims:
            if claim.kind == "bucket":
                scaled.append(replace(claim, limit=claim.limit * self.share))
                continue
            if claim.key not in self._local_limits:
                spent = await self._seeder(claim) if self._seeder is not None else None
                if spent is None:
                    self._local_limits[claim.key] = claim.limit * self.share
                else:
                    await self.local.seed(claim, spent)
                    self._local_limits[claim.key] = spent + max(0.0, claim.limit - spent) * self.share
            scaled.append(replace(claim, limit=self._local_limits[claim.key]))
        return scaled

    async def acquire(self, claims: Sequence[Claim], *, ttl_s: float, payload: str = "") -> Reservation | Refusal:
        if not self.down:
            try:
                outcome = await self.primary.acquire(claims, ttl_s=ttl_s, payload=payload)
            except AdmissionUnavailable as error:
                self._went_down(error)
            else:
                if self._outage_reported:  # back: the next outage starts again from the ledger
                    self._outage_reported = False
                    self._local_limits.clear()
                return outcome
        outcome = await self.local.acquire(await self._local_claims(claims), ttl_s=ttl_s, payload=payload)
        if isinstance(outcome, Reservation):
            self._local_ids.add(outcome.id)
        return outcome

    async def reconcile(self, reservation: Reservation, actual: Sequence[float]) -> bool:
        return (await self.reconcile_many([(reservation, actual)]))[0]

    async def reconcile_many(self, settlements: Sequence[tuple[Reservation, Sequence[float]]]) -> list[bool]:
        """Each reservation settles where it was made: this machine's books during an outage, else Redis."""
        local = [s for s in settlements if s[0].id in self._local_ids]
        shared = [s for s in settlements if s[0].id not in self._local_ids]
        done: dict[str, bool] = {}
        if local:
            self._local_ids.difference_update(reservation.id for reservation, _ in local)
            done.update(zip((r.id for r, _ in local), await self.local.reconcile_many(local), strict=True))
        if shared:
            done.update(zip((r.id for r, _ in shared), await self.primary.reconcile_many(shared), strict=True))
        return [done[reservation.id] for reservation, _ in settlements]

    async def extend(self, reservation: Reservation, ttl_s: float) -> bool:
        if reservation.id in self._local_ids:
            return await self.local.extend(reservation, ttl_s)
        return await self.primary.extend(reservation, ttl_s)

    async def levels(self, claims: Sequence[Claim]) -> list[tuple[float, float]]:
        if not self.down:
            try:
                return await self.primary.levels(claims)
            except AdmissionUnavailable as error:
                self._went_down(error)
        return await self.local.levels(await self._local_claims(claims))

    async def seed(self, claim: Claim, used: float) -> None:
        if not self.down:
            try:
                await self.primary.seed(claim, used)
                return
            except AdmissionUnavailable as error:
                self._went_down(error)
        await self.local.seed(claim, used)

    async def orphans(self, now: float | None = None) -> list[Reservation]:
        found = await self.local.orphans(now)
        if not self.down:
            try:
                found += await self.primary.orphans(now)
            except AdmissionUnavailable as error:
                self._went_down(error)
        return found

    async def aclose(self) -> None:
        await self.primary.aclose()
        await self.local.aclose()
