"""What the dashboard shows, read from the ledger with queries that group and sum in the database.

Spend comes from ``contentmill.ledger.report`` (the query behind ``contentmill report``, so the page's total and the
command's agree to the cent for the same window), anomalies from ``ledger.anomaly``, budgets' forecasts from
``ledger.forecast`` and what they hold right now from the gateway's admission. Nothing here sums rows in Python:
every function moves at most one row per group, bucket or listed item.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from contentmill.errors import ContentmillError
from contentmill.gateway.admission import Admission
from contentmill.gateway.policy import Policy
from contentmill.ledger import Alert, Anomaly, AnomalyConfig, Budget, Forecast, LargeGeneration, LedgerStore
from contentmill.ledger.anomaly import BUCKET_LENGTH, bucket_starts, series_anomalies, series_of
from contentmill.ledger.forecast import forecast_budgets, period_bounds
from contentmill.ledger.records import TAG_KEY
from contentmill.ledger.report import COLUMN_DIMENSIONS, Report, report
from contentmill.ledger.schema import route_decisions
from contentmill.server.errors import ApiError
from contentmill.server.keys import KEY_TAG, VirtualKey

PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
DEFAULT_PERIOD = "7d"
DIMENSIONS = ("team", "project", "model", "api_type", "provider", "user", KEY_TAG)
MAX_SERIES = 8  # groups drawn on their own; the rest are summed as "other"
MAX_BUCKETS = 24 * 14  # hour buckets beyond two weeks become day buckets
OTHER = "other"
NONE = "(none)"


@dataclass(frozen=True, slots=True)
class Window:
    """The dashboard's filter: [since, until), grouped by ``by``, in hour or day buckets."""

    since: datetime
    until: datetime
    by: str
    bucket: str
    period: str  # a preset of PERIODS, or "custom"


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, message, "invalid_request_error", "invalid_value", param)


def _instant(text: str, param: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _bad(f"{param} takes an ISO 8601 time such as 2026-05-01T00:00:00Z (got {text!r})", param) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def window_from(params: Mapping[str, str], now: datetime) -> Window:
    """The window a page's query string asks for: ``period`` (24h, 7d, 30d) or ``since``/``until`` (ISO, UTC when
    no zone is given), ``by`` (a column or any tag), ``bucket`` (hour, day; by default hour up to three days)."""
    by = (params.get("tag") or params.get("by") or "team").strip()
    if by not in COLUMN_DIMENSIONS and not TAG_KEY.match(by):
        raise _bad(f"cannot group by {by!r}: pick one of {', '.join(DIMENSIONS)} or a tag name", "by")
    period = params.get("period") or ("custom" if params.get("since") else DEFAULT_PERIOD)
    if period == "custom":
        until = _instant(params["until"], "until") if params.get("until") else now
        if not params.get("since"):
            raise _bad("a custom period needs since (and until, default now)", "since")
        since = _instant(params["since"], "since")
    elif period in PERIODS:
        until, since = now, now - PERIODS[period]
    else:
        raise _bad(f"period is one of {', '.join(PERIODS)} or custom (got {period!r})", "period")
    if until <= since:
        raise _bad(f"until ({until.isoformat()}) must be after since ({since.isoformat()})", "until")
    bucket = params.get("bucket") or ("hour" if until - since <= timedelta(days=3) else "day")
    if bucket not in BUCKET_LENGTH:
        raise _bad(f"bucket is hour or day (got {bucket!r})", "bucket")
    if bucket == "hour" and (until - since) / BUCKET_LENGTH["hour"] > MAX_BUCKETS:
        bucket = "day"
    return Window(since, until, by, bucket, period)


# -- spend ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: list[float]
    total: float


@dataclass(frozen=True, slots=True)
class Spend:
    """The window's bucketed spend by group (largest groups first, the rest as ``other``), its anomalies and
    totals (the report's, so the page agrees with ``contentmill report``)."""

    window: Window
    starts: list[datetime]
    series: list[Series]
    groups: list[dict[str, Any]]  # one row per group: name, cost_usd, calls, saved_usd, errors
    anomalies: list[Anomaly]
    total: dict[str, int | float]


def _name(value: Any) -> str:
    return NONE if value is None else str(value)


def spend(store: LedgerStore, window: Window, config: AnomalyConfig | None = None) -> tuple[Spend, CacheView]:
    """The window's spend and its cache outcomes, from one report grouped by the chosen dimension, the cache
    status and the bucket (one pass over the window's calls)."""
    dims = [window.by] if window.by == "cache_status" else [window.by, "cache_status"]
    result: Report = report(store, dims, window.since, window.until, bucket=window.bucket)
    starts = bucket_starts(window.since, window.until, window.bucket)
    full = series_of(result.rows, window.by, "cost", starts)
    groups: dict[str, dict[str, Any]] = {}
    for row in result.rows:
        group = groups.setdefault(_name(row[window.by]), {"name": _name(row[window.by]), "cost_usd": 0.0,
                                                          "calls": 0, "saved_usd": 0.0, "errors": 0})
        for metric in ("cost_usd", "calls", "saved_usd", "errors"):
            group[metric] += row[metric]
    ranked = sorted(groups.values(), key=lambda g: (-g["cost_usd"], g["name"]))
    shown = {g["name"] for g in ranked[:MAX_SERIES]} if len(ranked) > MAX_SERIES + 1 else {g["name"] for g in ranked}
    series: list[Series] = []
    other = [0.0] * len(starts)
    for value, values in full.items():
        if _name(value) in shown:
            series.append(Series(_name(value), values, sum(values)))
        else:
            other = [a + b for a, b in zip(other, values, strict=True)]
    series.sort(key=lambda s: (-s.total, s.name))
    if any(other):
        series.append(Series(OTHER, other, sum(other)))
    marks = series_anomalies(starts, full, config or AnomalyConfig())
    named = [replace(a, subject=_name(a.subject)) for a in marks]
    return Spend(window, starts, series, ranked, named, result.total), _cache(result.rows)


# -- budgets -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BudgetView:
    budget: Budget
    forecast: Forecast
    reserved_usd: float | None  # None: the admission cannot say for this scope (a wildcard budget)

    @property
    def scope(self) -> str:
        return f"{self.budget.scope_key}={self.budget.scope_value}"

    @property
    def used_share(self) -> float:
        return self.forecast.spent_usd / self.budget.limit_usd

    @property
    def reserved_share(self) -> float:
        return (self.reserved_usd or 0.0) / self.budget.limit_usd

    @property
    def forecast_share(self) -> float:
        return self.forecast.projected_usd / self.budget.limit_usd

    @property
    def runs_out(self) -> datetime | None:
        """When spend at the forecast's rate would reach the limit, if before the period ends."""
        moment = self.forecast.exhausts_at
        return moment if moment is not None and moment < self.forecast.period_end else None


def forecasts(store: LedgerStore, now: datetime) -> list[tuple[Budget, Forecast]]:
    found = store.budgets()
    return list(zip(found, forecast_budgets(store, found, now), strict=True))


async def budget_views(found: Sequence[tuple[Budget, Forecast]], admission: Admission | None) -> list[BudgetView]:
    """Each budget with what the admission holds for calls in flight in its scope right now (one read of the
    admission for all of them; a wildcard budget such as ``team=*`` has no one scope to ask about)."""
    now = time.time()
    asked = [i for i, (budget, _) in enumerate(found) if budget.scope_value != "*" or budget.scope_key == "all"]
    reserved: dict[int, float] = {}
    if admission is not None and asked:
        claims = [Policy.budget_claim(found[i][0], f"{found[i][0].scope_key}={found[i][0].scope_value}", 0.0, now)
                  for i in asked]
        try:
            reserved = {i: level[1] for i, level in zip(asked, await admission.levels(claims), strict=True)}
        except ContentmillError:
            reserved = {}
    views = [BudgetView(budget, forecast, reserved.get(i)) for i, (budget, forecast) in enumerate(found)]
    views.sort(key=lambda v: -v.used_share)
    return views


# -- cache, calls, alerts, routing, keys -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CacheView:
    tiers: list[dict[str, Any]]  # tier, hits, saved_usd
    hits: int
    misses: int
    saved_usd: float

    @property
    def hit_rate(self) -> float | None:
        asked = self.hits + self.misses
        return self.hits / asked if asked else None


def _cache(rows: Sequence[Mapping[str, Any]]) -> CacheView:
    """Hits and USD saved per tier (``hit:l1`` ...) and misses, from report rows that split by cache status."""
    tiers: dict[str, dict[str, Any]] = {}
    misses = 0
    for row in rows:
        status = str(row["cache_status"])
        if status.startswith("hit"):
            tier = tiers.setdefault(status.partition(":")[2] or "?", {"tier": status.partition(":")[2] or "?",
                                                                    "hits": 0, "saved_usd": 0.0})
            tier["hits"] += row["calls"]
            tier["saved_usd"] += row["saved_usd"]
        elif status == "miss":
            misses += row["calls"]
    listed = sorted(tiers.values(), key=lambda t: t["tier"])
    return CacheView(listed, sum(t["hits"] for t in listed), misses, sum(t["saved_usd"] for t in listed))


def large_generations(store: LedgerStore, window: Window, limit: int = 8) -> list[Alert]:
    """The window's large generations: what the ledger's ``large_generation`` rule flagged (no scan of calls)."""
    return [a for a in store.alerts(window.since, rule=LargeGeneration.name, limit=limit) if a.ts < window.until]


def alerts(store: LedgerStore, window: Window, limit: int = 30) -> list[Alert]:
    return [a for a in store.alerts(window.since, limit=limit) if a.ts < window.until]


@dataclass(frozen=True, slots=True)
class RouteShare:
    model: str
    decisions: int
    share: float
    latest: str  # the newest decision's id, whose explanation the page links to
    reason: str


def routing(store: LedgerStore, window: Window) -> list[RouteShare]:
    """How the router's decisions in the window split between models, with each model's newest decision."""
    in_window = sa.and_(route_decisions.c.ts >= window.since, route_decisions.c.ts < window.until)
    counted = (sa.select(route_decisions.c.chosen_model, sa.func.count().label("n"),
                         sa.func.max(route_decisions.c.ts).label("latest"))
               .where(in_window).group_by(route_decisions.c.chosen_model))
    rows = store.rows(counted, "count routing decisions")
    total = sum(row["n"] for row in rows)
    shares = []
    for row in sorted(rows, key=lambda r: -r["n"]):
        newest = store.rows(sa.select(route_decisions.c.id, route_decisions.c.reason)
                            .where(in_window, route_decisions.c.chosen_model == row["chosen_model"])
                            .order_by(route_decisions.c.ts.desc()).limit(1), "read a routing decision")
        shares.append(RouteShare(row["chosen_model"], row["n"], row["n"] / total, newest[0]["id"],
                                 newest[0]["reason"]))
    return shares


@dataclass(frozen=True, slots=True)
class KeyView:
    key: VirtualKey
    spent_usd: float  # in the key's current budget period (a month when it has no budget)
    period_start: datetime

    @property
    def used_share(self) -> float | None:
        return self.spent_usd / self.key.budget_usd if self.key.budget_usd else None


def key_views(store: LedgerStore, keys: Sequence[VirtualKey], now: datetime) -> list[KeyView]:
    """Each key's spend in its budget's current period: one grouped query per period in use."""
    starts = {k.period: period_bounds(k.period, "UTC", now)[0] for k in keys}
    spent: dict[str, dict[str, float]] = {}
    for period, start in starts.items():
        rows = report(store, KEY_TAG, start, now).rows if start < now else []
        spent[period] = {row[KEY_TAG]: row["cost_usd"] for row in rows if row[KEY_TAG] is not None}
    return [KeyView(k, spent[k.period].get(k.id, 0.0), starts[k.period]) for k in keys]


def with_key_names(spend: Spend, keys: Sequence[KeyView]) -> Spend:
    """Spend stacked by key (``vkey``) with its groups named as the keys are named, not by their ids alone."""
    if spend.window.by != KEY_TAG:
        return spend
    names = {k.key.id: k.key.id if k.key.name == k.key.id else f"{k.key.name} ({k.key.id})" for k in keys}
    return replace(spend, series=[replace(s, name=names.get(s.name, s.name)) for s in spend.series],
                   groups=[{**g, "name": names.get(g["name"], g["name"])} for g in spend.groups],
                   anomalies=[replace(a, subject=names.get(str(a.subject), a.subject)) for a in spend.anomalies])


@dataclass
class Overview:
    """Everything on the dashboard for one window."""

    window: Window
    now: datetime
    spend: Spend
    budgets: list[BudgetView] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    large: list[Alert] = field(default_factory=list)
    cache: CacheView | None = None
    reuse: dict[str, Any] | None = None
    routing: list[RouteShare] = field(default_factory=list)
    keys: list[KeyView] = field(default_factory=list)

    @property
    def saved_usd(self) -> float:
        return (self.cache.saved_usd if self.cache else 0.0) + float((self.reuse or {}).get("saved_usd", 0.0))


def usd(value: float | None) -> str:
    """Dollars for a person to read: cents for large amounts, more digits for the small ones models cost."""
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"${value:,.2f}"
    if abs(value) >= 1:
        return f"${value:,.4f}"
    return f"${value:,.6f}"
