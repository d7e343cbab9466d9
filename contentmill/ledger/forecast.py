"""Where a budget's spend will be at the end of its period, and when it runs out.

Method: periods are calendar-aligned in the budget's time zone (zoneinfo): a day starts at local
midnight, a week on Monday at local midnight, a month on the 1st; so a period is 23 or 25 hours long
across a DST change, and the elapsed fraction is real elapsed time over real period length. The spend
rate is a blend of two run-rates::

    average rate = spent so far / time elapsed in the period
    recent rate  = spent in the last ``recent_window`` (clipped to the period) / that window
    rate         = recent_weight * recent rate + (1 - recent_weight) * average rate
    projected    = spent + rate * time remaining in the period

With ``recent_weight = 0`` this is the plain linear run-rate ``spent / elapsed fraction``; the recent
term makes a forecast react to a change of pace within hours instead of days. ``days_until_exhausted``
is ``(limit - spent) / rate`` in days (0 when already spent, None when nothing is being spent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from contentmill.errors import LedgerError
from contentmill.ledger.records import Budget, as_utc
from contentmill.ledger.report import report
from contentmill.ledger.store import ALL_SCOPE, LedgerStore

RECENT_WINDOW = timedelta(hours=6)
RECENT_WEIGHT = 0.5
DAY_S = 86_400.0


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def period_bounds(period: str, timezone: str | ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the calendar day, week (from Monday) or month that holds ``now`` locally."""
    zone = timezone if isinstance(timezone, ZoneInfo) else ZoneInfo(timezone)
    today = as_utc(now).astimezone(zone).date()
    if period == "day":
        first, after = today, today + timedelta(days=1)
    elif period == "week":
        first = today - timedelta(days=today.weekday())
        after = first + timedelta(days=7)
    elif period == "month":
        first = today.replace(day=1)
        after = _next_month(first)
    else:
        raise LedgerError(f"budget period must be day, week or month (got {period!r})")
    start = datetime.combine(first, time(), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(after, time(), tzinfo=zone).astimezone(UTC)
    return start, end


@dataclass(frozen=True, slots=True)
class Forecast:
    """A budget's period so far and its projected end; rates are in USD per hour."""

    limit_usd: float
    period_start: datetime
    period_end: datetime
    now: datetime
    spent_usd: float
    recent_usd: float
    recent_window_h: float
    average_rate: float
    recent_rate: float
    rate: float
    projected_usd: float

    @property
    def elapsed_fraction(self) -> float:
        return (self.now - self.period_start) / (self.period_end - self.period_start)

    @property
    def over_budget(self) -> bool:
        """The projection ends the period above the limit."""
        return self.projected_usd > self.limit_usd

    @property
    def days_until_exhausted(self) -> float | None:
        if self.spent_usd >= self.limit_usd:
            return 0.0
        if self.rate <= 0:
            return None
        return (self.limit_usd - self.spent_usd) / self.rate / 24.0

    @property
    def exhausts_at(self) -> datetime | None:
        days = self.days_until_exhausted
        return None if days is None else self.now + timedelta(days=days)

    def as_dict(self) -> dict[str, Any]:
        exhausts = self.exhausts_at
        return {
            "limit_usd": self.limit_usd, "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(), "elapsed_fraction": round(self.elapsed_fraction, 6),
            "spent_usd": self.spent_usd, "projected_usd": self.projected_usd, "rate_usd_per_h": self.rate,
            "days_until_exhausted": self.days_until_exhausted,
            "exhausts_at": None if exhausts is None else exhausts.isoformat(),
        }


def project(
    *,
    spent: float,
    recent_spent: float,
    limit: float,
    start: datetime,
    end: datetime,
    now: datetime,
    recent_window: timedelta = RECENT_WINDOW,
    recent_weight: float = RECENT_WEIGHT,
) -> Forecast:
    """The forecast from plain numbers; ``recent_spent`` covers the last ``min(recent_window, elapsed)``."""
    if not 0 <= recent_weight <= 1:
        raise LedgerError(f"recent_weight is a share in [0, 1] (got {recent_weight})")
    start, end, now = as_utc(start), as_utc(end), as_utc(now)
    if not start <= now <= end:
        raise LedgerError("now must lie inside the period")
    elapsed_h = (now - start).total_seconds() / 3600
    window_h = min(recent_window.total_seconds() / 3600, elapsed_h)
    average = spent / elapsed_h if elapsed_h > 0 else 0.0
    recent = recent_spent / window_h if window_h > 0 else 0.0
    rate = recent_weight * recent + (1 - recent_weight) * average
    remaining_h = (end - now).total_seconds() / 3600
    return Forecast(
        limit_usd=limit, period_start=start, period_end=end, now=now, spent_usd=spent,
        recent_usd=recent_spent, recent_window_h=window_h, average_rate=average, recent_rate=recent,
        rate=rate,
        projected_usd=spent + rate * remaining_h,
    )


def forecast_budget(
    store: LedgerStore,
    budget: Budget,
    now: datetime,
    *,
    recent_window: timedelta = RECENT_WINDOW,
    recent_weight: float = RECENT_WEIGHT,
) -> Forecast:
    """The forecast of ``budget``'s current period from the ledger's spend up to ``now``."""
    now = as_utc(now)
    start, end = period_bounds(budget.period, budget.zone, now)
    window = min(recent_window, now - start)
    spent = store.spent(budget.scope_key, budget.scope_value, start, now)
    recent = store.spent(budget.scope_key, budget.scope_value, now - window, now) if window else 0.0
    return project(
        spent=spent, recent_spent=recent, limit=budget.limit_usd, start=start, end=end, now=now,
        recent_window=recent_window, recent_weight=recent_weight,
    )


def forecast_budgets(
    store: LedgerStore,
    budgets: Sequence[Budget],
    now: datetime,
    *,
    recent_window: timedelta = RECENT_WINDOW,
    recent_weight: float = RECENT_WEIGHT,
) -> list[Forecast]:
    """``forecast_budget`` of many budgets at once: budgets that share a scope key, period and time zone (every
    team's month) are read with two grouped queries between them, not two each."""
    now = as_utc(now)
    found: dict[int, Forecast] = {}
    groups: dict[tuple[str, str, str], list[int]] = {}
    for index, budget in enumerate(budgets):
        groups.setdefault((budget.scope_key, budget.period, budget.timezone), []).append(index)
    for (key, period, timezone), members in groups.items():
        if key == ALL_SCOPE or len(members) == 1:
            for index in members:
                found[index] = forecast_budget(store, budgets[index], now, recent_window=recent_window,
                                               recent_weight=recent_weight)
            continue
        start, end = period_bounds(period, timezone, now)
        window = min(recent_window, now - start)
        spent, recent = _spent_by(store, key, start, now), _spent_by(store, key, now - window, now)
        for index in members:
            budget = budgets[index]
            found[index] = project(
                spent=spent.get(budget.scope_value, 0.0), recent_spent=recent.get(budget.scope_value, 0.0),
                limit=budget.limit_usd, start=start, end=end, now=now, recent_window=recent_window,
                recent_weight=recent_weight,
            )
    return [found[index] for index in range(len(budgets))]


def _spent_by(store: LedgerStore, key: str, since: datetime, until: datetime) -> dict[str, float]:
    """Charged spend in [since, until) per value of a column or tag (what ``LedgerStore.spent`` sums for one)."""
    if until <= since:
        return {}
    return {str(row[key]): float(row["cost_usd"]) for row in report(store, key, since, until).rows
            if row[key] is not None}
