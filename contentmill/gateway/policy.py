"""Which limits apply to a call, turned into admission claims.

- the model's own RPM/TPM from the catalog, per provider account (buckets);
- rate limits per dimension (team, project, api_type, model, provider or any tag): requests, tokens, characters or
  seconds per minute (buckets);
- quotas per dimension and calendar period in units (counters);
- budgets per dimension and calendar period in USD, hard (refuse) or soft (alert only) (counters).

A scope is ``key=value``; ``key=*`` gives every value its own limit (``team=*``: each team its own budget).
Periods are calendar-aligned in the budget's time zone: a day, an ISO week from Monday, a month.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from contentmill.catalog import ModelInfo
from contentmill.errors import ConfigError
from contentmill.gateway.admission import Claim
from contentmill.ledger.forecast import period_bounds
from contentmill.ledger.records import Budget
from contentmill.metering import Usage
from contentmill.settings import Settings

Period = Literal["day", "week", "month"]
Unit = Literal["requests", "tokens", "characters", "seconds"]
UNITS: tuple[Unit, ...] = ("requests", "tokens", "characters", "seconds")
WINDOW_SLACK_S = 86_400.0  # counters outlive their window by a day, so late reconciles still find them


@dataclass(frozen=True, slots=True)
class Scope:
    key: str
    value: str  # "*" matches every value, each with its own limit

    @classmethod
    def parse(cls, text: str) -> Scope:
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"a scope is KEY=VALUE, e.g. team=shop or team=* (got {text!r})")
        return cls(key.strip(), value.strip())

    def resolve(self, facts: Mapping[str, str]) -> str | None:
        """The scope's concrete name for this call (``team=shop``), or None when it does not apply."""
        actual = facts.get(self.key)
        if actual is None or (self.value != "*" and actual != self.value):
            return None
        return f"{self.key}={actual}"

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


def window(period: str, tz: str, now: float) -> tuple[str, float]:
    """The calendar window holding ``now``: an id naming it (its UTC start) and the time it ends."""
    start, end = period_bounds(period, tz, datetime.fromtimestamp(now, UTC))
    return start.strftime("%Y%m%dT%H%M"), end.timestamp()


def budget_scope(budget: Budget) -> Scope:
    return Scope(budget.scope_key, budget.scope_value)


@dataclass(frozen=True, slots=True)
class Quota:
    scope: Scope
    unit: Unit
    limit: float
    period: Period = "day"
    tz: str = "UTC"


@dataclass(frozen=True, slots=True)
class RateLimit:
    scope: Scope
    unit: Unit
    per_minute: float


@dataclass(frozen=True, slots=True)
class CallLimits:
    """Limits a caller brings along with its calls (a virtual key's own budget and rates), on top of the
    policy's: the same claims, scoped to the caller's tags."""

    budgets: tuple[Budget, ...] = ()
    rate_limits: tuple[RateLimit, ...] = ()


NO_LIMITS = CallLimits()
_CALLER: ContextVar[CallLimits] = ContextVar("contentmill_caller_limits", default=NO_LIMITS)


@contextmanager
def caller_limits(limits: CallLimits) -> Iterator[None]:
    """Hold every call made inside the block (by this task, and the tasks and threads it starts) to ``limits``
    as well: the server running a creator video for a key applies the key's budget and rates to each of its
    calls, which the video's steps make without knowing of keys."""
    token = _CALLER.set(limits)
    try:
        yield
    finally:
        _CALLER.reset(token)


def with_caller(limits: CallLimits) -> CallLimits:
    """A call's own limits together with those of the block it is made in (:func:`caller_limits`)."""
    ambient = _CALLER.get()
    if ambient is NO_LIMITS or ambient is limits:
        return limits
    if limits is NO_LIMITS:
        return ambient
    return CallLimits(limits.budgets + ambient.budgets, limits.rate_limits + ambient.rate_limits)


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the policy matches on: the model, its provider account, the API type and the caller's tags."""

    model: ModelInfo
    account: str
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def api_type(self) -> str:
        return self.model.modality

    def as_mapping(self) -> dict[str, str]:
        return {**self.tags, "model": self.model.name, "provider": self.model.provider, "api_type": self.api_type}


def units(usage: Usage, unit: Unit) -> float:
    if unit == "requests":
        return 1.0
    if unit == "tokens":
        return float(usage.input_tokens + usage.output_tokens)
    if unit == "characters":
        return float(usage.characters)
    return float(usage.seconds)


@dataclass(frozen=True, slots=True)
class Metered:
    """A claim and how to measure the actual amount for it from a call's usage and cost.

    ``refund`` is False for a vendor's own limits: OpenAI counts input + max_tokens against TPM when a request
    arrives and gives nothing back, so our bucket must not either, or it would admit what the vendor refuses.
    """

    claim: Claim
    unit: Unit | Literal["usd"]
    refund: bool = True

    def actual(self, usage: Usage, cost_usd: float) -> float:
        measured = cost_usd if self.unit == "usd" else units(usage, self.unit)
        return measured if self.refund else max(measured, self.claim.amount)


@dataclass
class Policy:
    budgets: list[Budget] = field(default_factory=list)
    quotas: list[Quota] = field(default_factory=list)
    rate_limits: list[RateLimit] = field(default_factory=list)
    headroom: float = 0.05  # share of a vendor's RPM/TPM burst kept free for the admission-to-arrival lag
    # budget claim key -> (scope key, scope value, window start): what to ask the ledger to seed a new counter
    windows: dict[str, tuple[str, str, datetime]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, budgets: list[Budget]) -> Policy:
        """Budgets from the ledger; quotas and rate limits from the settings (contentmill.toml or environment)."""
        return cls(
            budgets=budgets,
            quotas=[Quota(Scope.parse(q.scope), q.unit, q.limit, q.period, q.tz) for q in settings.quotas],
            rate_limits=[RateLimit(Scope.parse(r.scope), r.unit, r.per_minute) for r in settings.rate_limits],
        )

    def claims(self, facts: CallFacts, estimate: Usage, cost_usd: float, now: float,
               extra: CallLimits = NO_LIMITS) -> list[Metered]:
        """Every limit that applies to the call (the policy's and ``extra``), each with the most it may use."""
        info, out = facts.model, []
        main_unit: Unit = "tokens" if info.modality in ("text", "embedding") else (
            "characters" if info.modality == "speech" else "seconds")
        if info.rpm:
            out.append(Metered(self.vendor_limit(facts.account, info, "rpm", 1.0), "requests", refund=False))
        if info.tpm and main_unit == "tokens":
            out.append(Metered(self.vendor_limit(facts.account, info, "tpm", units(estimate, "tokens")), "tokens",
                               refund=False))
        mapping = facts.as_mapping()
        for limit in (*self.rate_limits, *extra.rate_limits):
            concrete = limit.scope.resolve(mapping)
            if concrete is not None:
                amount = units(estimate, limit.unit)
                out.append(Metered(Claim(f"rate:{concrete}:{limit.unit}", "bucket", amount, limit.per_minute,
                                         label=f"{limit.unit} per minute for {concrete}"), limit.unit))
        for quota in self.quotas:
            concrete = quota.scope.resolve(mapping)
            if concrete is not None:
                ident, end = window(quota.period, quota.tz, now)
                out.append(Metered(Claim(f"quota:{concrete}:{quota.unit}:{ident}", "counter",
                                         units(estimate, quota.unit), quota.limit,
                                         ttl_s=end - now + WINDOW_SLACK_S,
                                         label=f"{quota.unit} quota of {concrete} per {quota.period}"), quota.unit))
        for budget in (*self.budgets, *extra.budgets):
            concrete = budget_scope(budget).resolve(mapping)
            if concrete is not None:
                claim = self.budget_claim(budget, concrete, cost_usd, now)
                if claim.key not in self.windows:
                    start, _ = period_bounds(budget.period, budget.timezone, datetime.fromtimestamp(now, UTC))
                    self.windows[claim.key] = (budget.scope_key, concrete.partition("=")[2], start)
                out.append(Metered(claim, "usd"))
        return out

    def vendor_limit(self, account: str, info: ModelInfo, kind: Literal["rpm", "tpm"], amount: float) -> Claim:
        """The claim on a model's requests- or tokens-per-minute at one vendor account (shared by every caller of
        that account, whatever their tags). It refills at the vendor's rate but holds ``headroom`` less: a call is
        admitted here a moment before the vendor counts it, and the headroom absorbs that lag."""
        per_minute = info.rpm if kind == "rpm" else info.tpm
        assert per_minute, f"{info.name} has no {kind}"
        keep = 1.0 - self.headroom
        return Claim(f"acct:{account}:{info.name}:{kind}", "bucket", amount, per_minute * keep, period_s=60.0 * keep,
                     label=f"{kind} of {info.name}")

    @staticmethod
    def budget_claim(budget: Budget, concrete: str, amount: float, now: float) -> Claim:
        ident, end = window(budget.period, budget.timezone, now)
        return Claim(f"budget:{concrete}:{budget.period}:{ident}", "counter", amount,
                     budget.limit_usd if budget.hard else math.inf, ttl_s=end - now + WINDOW_SLACK_S,
                     label=f"{concrete} per {budget.period}")
