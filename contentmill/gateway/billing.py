"""One call as the meter sees it (``Call``: what it may use and cost, what it holds) and what it is billed.

A vendor's usage is billed only when it can be this call's: counts that are non-negative integers within what the
call could have used (``metering.usage_ceiling``). Otherwise the call is billed at the estimate it reserved,
marked estimated and flagged, the vendor's figures kept in its row, and the ``usage_rejected`` alert fires. An
answer whose content is unusable but which reports usage is billed too (one row, outcome error).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import orjson

from contentmill.catalog import ModelInfo
from contentmill.errors import UnusableAnswer
from contentmill.gateway.admission import Reservation
from contentmill.gateway.generation import Generation
from contentmill.gateway.policy import NO_LIMITS, CallLimits, Metered
from contentmill.ledger import CallRecord
from contentmill.metering import ReportedUsage, Usage, usage_figures, usage_problem


@dataclass(frozen=True, slots=True)
class Bill:
    """What a call is charged: the usage it reported when that can be this call's, else the estimate it reserved
    (then ``problem`` says why and ``figures`` keeps what the vendor sent)."""

    usage: Usage
    cost_usd: float
    figures: str | None = None
    problem: str | None = None

    def mark(self, record: CallRecord) -> CallRecord:
        """The call's ledger row, flagged with the vendor's figures when they were not billed."""
        if self.problem is None:
            return record
        return record.usage_rejected(self.figures or "", self.problem)


def bill(info: ModelInfo, estimate: Usage, ceiling: Usage | None, usage: Usage | None,
         reported: ReportedUsage | None, *, batch: bool = False) -> Bill:
    """Check the usage a vendor reported before it is billed; what cannot be the call's is billed at ``estimate``.

    A vendor's counts (``reported``) must be non-negative integers within ``ceiling``; our own counts and those
    of local engines and fakes (no ``reported``) are billed as they are.
    """
    problem = reported.problem if reported is not None else None
    if problem is None and reported is not None and usage is not None and ceiling is not None:
        problem = usage_problem(usage, ceiling)
    if problem is None and usage is not None:
        return Bill(usage, info.cost(usage, batch=batch))
    fallback = estimate.with_estimate(True)
    figures = reported.figures if reported is not None else usage_figures(usage.as_dict() if usage else None)
    return Bill(fallback, info.cost(fallback, batch=batch), figures, problem or "the answer reports no usage")


@dataclass(slots=True)
class Call:
    """One call to one model as the meter sees it: what it may use and cost, and what it holds."""

    info: ModelInfo
    estimate: Usage
    reserved_usd: float
    tags: dict[str, str]
    request_hash: str
    limits: CallLimits = NO_LIMITS
    ceiling: Usage | None = None  # the most the call could have used; None: its usage is not the vendor's
    batch: bool = False  # priced at the vendor's batch discount
    metered: list[Metered] = field(default_factory=list)
    reservation: Reservation | None = None
    keeper: asyncio.Task[None] | None = None  # renews a stream's reservation while it is read
    waited_s: float = 0.0  # spent waiting for admission

    def bill(self, usage: Usage | None, reported: ReportedUsage | None) -> Bill:
        return bill(self.info, self.estimate, self.ceiling, usage, reported, batch=self.batch)

    def answered(self, gen: Generation, billed: Bill, cache_status: str) -> CallRecord:
        """The ledger row of an answer billed as ``billed``."""
        return billed.mark(CallRecord.from_generation(
            gen, api_type=self.info.modality, request_hash=self.request_hash, reserved_usd=self.reserved_usd,
            reservation_id=self.reservation.id if self.reservation else None, cache_status=cache_status,
            admission_wait_s=self.waited_s))

    def failed(self, error: BaseException, *, latency_s: float = 0.0, retries: int = 0
               ) -> tuple[Bill | None, CallRecord]:
        """The ledger row of a call that failed, and its bill: an unusable answer that reports usage is billed
        (the vendor bills it), any other failure costs nothing."""
        record = CallRecord.from_error(
            error, model=self.info.name, api_type=self.info.modality, estimate=self.estimate, tags=self.tags,
            retries=retries, latency_s=latency_s, request_hash=self.request_hash, reserved_usd=self.reserved_usd,
            reservation_id=self.reservation.id if self.reservation else None, admission_wait_s=self.waited_s)
        if not isinstance(error, UnusableAnswer):
            return None, record
        billed = self.bill(error.reported.usage, error.reported)
        return billed, billed.mark(replace(record, usage=billed.usage, cost_usd=billed.cost_usd))

    def payload(self) -> str:
        """What a sweep needs to charge the reservation if this process dies holding it (never the prompt)."""
        return reservation_payload(self.info.name, self.info.modality, self.estimate, self.reserved_usd, self.tags,
                                   self.request_hash)


def reservation_payload(model: str, api_type: str, estimate: Usage, reserved_usd: float, tags: Mapping[str, str],
                        request_hash: str) -> str:
    return orjson.dumps({"model": model, "api_type": api_type, "estimate": estimate.as_dict(),
                         "reserved_usd": reserved_usd, "tags": dict(tags), "request_hash": request_hash}).decode()
