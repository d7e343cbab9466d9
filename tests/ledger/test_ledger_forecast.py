"""Forecasts on hand-made numbers: calendar periods in a time zone, blended run-rates, exhaustion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ledger_helpers import call

from contentmill.errors import LedgerError
from contentmill.ledger import (
    AlertEngine,
    Budget,
    BudgetUsed,
    ForecastOverBudget,
    LedgerStore,
    forecast_budget,
    forecast_budgets,
    period_bounds,
    project,
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "zone", "now", "start", "end"),
    [
        # Paris springs forward on 2025-03-30: that day is 23 hours long.
        ("day", "Europe/Paris", "2025-03-30T12:00", "2025-03-29T23:00", "2025-03-30T22:00"),
        ("day", "UTC", "2025-05-01T00:00", "2025-05-01T00:00", "2025-05-02T00:00"),
        ("week", "UTC", "2025-05-01T09:00", "2025-04-28T00:00", "2025-05-05T00:00"),  # Thursday -> Monday
        # Sunday 22:00 in New York is already Monday in UTC; the week is still New York's.
        ("week", "America/New_York", "2025-05-05T02:00", "2025-04-28T04:00", "2025-05-05T04:00"),
        ("month", "UTC", "2024-02-15T00:00", "2024-02-01T00:00", "2024-03-01T00:00"),  # leap February
        ("month", "UTC", "2025-12-31T23:59", "2025-12-01T00:00", "2026-01-01T00:00"),
        ("month", "Asia/Tokyo", "2025-04-30T20:00", "2025-04-30T15:00", "2025-05-31T15:00"),  # May in Tokyo
    ],
)
def test_periods_are_calendar_aligned_in_the_budget_zone(
    period: str, zone: str, now: str, start: str, end: str
) -> None:
    assert period_bounds(period, zone, utc(now)) == (utc(start), utc(end))


def test_a_blended_forecast_on_hand_made_numbers() -> None:
    # April 2025 has 30 days; on the 11th at 00:00, 10 days (1/3) have passed with 100 USD spent, 20 of them
    # in the last day. Average rate 10/day, recent rate 20/day, blended half and half: 15/day.
    # 20 days remain: projected = 100 + 15 * 20 = 400. Against a 300 limit: exhausted in 200/15 = 13.33 days.
    start, end = utc("2025-04-01T00:00"), utc("2025-05-01T00:00")
    now = utc("2025-04-11T00:00")
    forecast = project(
        spent=100.0,
        recent_spent=20.0,
        limit=300.0,
        start=start,
        end=end,
        now=now,
        recent_window=timedelta(days=1),
        recent_weight=0.5,
    )
    assert forecast.elapsed_fraction == pytest.approx(1 / 3)
    assert forecast.average_rate * 24 == pytest.approx(10.0) and forecast.recent_rate * 24 == pytest.approx(
        20.0
    )
    assert forecast.projected_usd == pytest.approx(400.0) and forecast.over_budget
    assert forecast.days_until_exhausted == pytest.approx(200 / 15)
    assert forecast.exhausts_at == now + timedelta(days=200 / 15)


def test_with_no_recent_weight_it_is_the_linear_run_rate() -> None:
    forecast = project(
        spent=100.0,
        recent_spent=20.0,
        limit=300.0,
        start=utc("2025-04-01T00:00"),
        end=utc("2025-05-01T00:00"),
        now=utc("2025-04-11T00:00"),
        recent_weight=0.0,
    )
    assert forecast.projected_usd == pytest.approx(100.0 / (1 / 3)) and not forecast.over_budget


def test_the_recent_window_is_clipped_to_the_period() -> None:
    # 06:00 into a day, 6 USD spent: a 12 h window covers only the 6 h that exist; both rates are 1 USD/h.
    forecast = project(
        spent=6.0,
        recent_spent=6.0,
        limit=100.0,
        start=utc("2025-05-01T00:00"),
        end=utc("2025-05-02T00:00"),
        now=utc("2025-05-01T06:00"),
        recent_window=timedelta(hours=12),
    )
    assert forecast.recent_window_h == 6.0 and forecast.rate == pytest.approx(1.0)
    assert forecast.projected_usd == pytest.approx(24.0) and forecast.days_until_exhausted == pytest.approx(
        94 / 24
    )


def test_exhaustion_when_spent_or_idle() -> None:
    bounds = {
        "start": utc("2025-05-01T00:00"),
        "end": utc("2025-05-02T00:00"),
        "now": utc("2025-05-01T12:00"),
    }
    assert project(spent=50.0, recent_spent=0.0, limit=40.0, **bounds).days_until_exhausted == 0.0
    idle = project(spent=0.0, recent_spent=0.0, limit=40.0, **bounds)
    assert idle.days_until_exhausted is None and idle.exhausts_at is None and idle.projected_usd == 0.0
    at_start = project(spent=0.0, recent_spent=0.0, limit=1.0, **{**bounds, "now": bounds["start"]})
    assert at_start.projected_usd == 0.0
    with pytest.raises(LedgerError, match="inside the period"):
        project(spent=1.0, recent_spent=0.0, limit=1.0, **{**bounds, "now": utc("2025-05-03T00:00")})


@pytest.fixture
def day_of_spend(store: LedgerStore) -> LedgerStore:
    """Team ads spends 1 + 1 + 2 USD by 06:00 on 2025-05-01 (UTC); other spend must not count."""
    day = utc("2025-05-01T00:00")
    store.write_calls(
        [
            call(ts=day + timedelta(minutes=30), cost_usd=1.0),
            call(ts=day + timedelta(hours=3, minutes=30), cost_usd=1.0),
            call(ts=day + timedelta(hours=5, minutes=30), cost_usd=2.0),
            call(ts=day + timedelta(hours=5), cost_usd=50.0, tags={"team": "shop"}),
            call(ts=day + timedelta(hours=5), cost_usd=0.0, saved_usd=3.0, outcome="cached"),
            call(ts=day - timedelta(minutes=1), cost_usd=9.0),  # the day before
        ]
    )
    return store


def test_forecast_from_the_ledger(day_of_spend: LedgerStore) -> None:
    # spent 4 in 6 h (0.667/h); the last 2 h hold 2 USD (1/h); blended 0.8333/h; 18 h left:
    # projected 4 + 15 = 19; a 10 USD limit is reached in (10 - 4) / 0.8333 = 7.2 h = 0.3 days.
    budget = Budget("team", "ads", "day", 10.0)
    forecast = forecast_budget(
        day_of_spend, budget, utc("2025-05-01T06:00"), recent_window=timedelta(hours=2)
    )
    assert forecast.spent_usd == pytest.approx(4.0) and forecast.recent_usd == pytest.approx(2.0)
    assert forecast.rate == pytest.approx(0.5 * 1.0 + 0.5 * 4 / 6)
    assert forecast.projected_usd == pytest.approx(19.0)
    assert forecast.days_until_exhausted == pytest.approx(0.3)


def test_many_budgets_forecast_at_once_as_each_would_alone(day_of_spend: LedgerStore) -> None:
    budgets = [Budget("team", "ads", "day", 10.0), Budget("team", "shop", "day", 40.0),
               Budget("team", "none", "day", 1.0), Budget("team", "ads", "day", 5.0, timezone="Asia/Tokyo"),
               Budget("model", "openai:gpt-4o-mini", "day", 80.0), Budget("all", "*", "day", 100.0),
               Budget("project", "spring", "month", 30.0)]
    now = utc("2025-05-01T06:00")
    together = forecast_budgets(day_of_spend, budgets, now, recent_window=timedelta(hours=2))
    alone = [forecast_budget(day_of_spend, b, now, recent_window=timedelta(hours=2)) for b in budgets]
    assert together == alone
    assert [f.spent_usd for f in together[:3]] == pytest.approx([4.0, 50.0, 0.0])


def test_forecast_follows_the_budget_time_zone(day_of_spend: LedgerStore) -> None:
    # In Tokyo (UTC+9) the day began at 15:00 UTC the evening before, so the 9 USD call at 23:59 counts.
    budget = Budget("team", "ads", "day", 100.0, timezone="Asia/Tokyo")
    forecast = forecast_budget(day_of_spend, budget, utc("2025-05-01T06:00"))
    assert forecast.period_start == utc("2025-04-30T15:00") and forecast.spent_usd == pytest.approx(13.0)


def test_the_forecast_alert_fires_before_the_period_ends_and_only_when_over(
    day_of_spend: LedgerStore,
) -> None:
    day_of_spend.set_budget(Budget("team", "ads", "day", 10.0))
    day_of_spend.set_budget(Budget("team", "shop", "day", 500.0))
    engine = AlertEngine(day_of_spend, [ForecastOverBudget(recent_window=timedelta(hours=2))], sinks=[])
    (alert,) = engine.evaluate(utc("2025-05-01T06:00"))
    assert alert.rule == "forecast_over_budget" and alert.data["budget"] == "team=ads/day"
    assert alert.data["projected_usd"] == pytest.approx(19.0) and alert.ts < utc("2025-05-02T00:00")
    assert "exhausted in 0.3 days" in alert.message
    engine.close()


def test_no_forecast_alert_too_early_in_the_period(day_of_spend: LedgerStore) -> None:
    day_of_spend.set_budget(Budget("team", "ads", "day", 1.5))
    engine = AlertEngine(day_of_spend, [ForecastOverBudget(min_elapsed=0.05)], sinks=[])
    assert engine.evaluate(utc("2025-05-01T01:00")) == []  # 1/24 of the day < 5%
    engine.close()


def test_budget_used_alerts_at_the_soft_threshold_then_when_exhausted(day_of_spend: LedgerStore) -> None:
    day_of_spend.set_budget(Budget("team", "ads", "day", 5.0, soft_pct=80.0))  # 4 of 5 spent at 06:00
    engine = AlertEngine(day_of_spend, [BudgetUsed()], sinks=[])
    assert engine.evaluate(utc("2025-05-01T03:00")) == []  # 1 of 5: 20%
    (soft,) = engine.evaluate(utc("2025-05-01T06:00"))
    assert soft.severity == "warning" and soft.data["used_pct"] == pytest.approx(80.0)
    day_of_spend.write_calls([call(ts=utc("2025-05-01T06:10"), cost_usd=1.5)])
    (hard,) = engine.evaluate(utc("2025-05-01T06:20"))
    assert hard.severity == "critical" and "110.0% used" in hard.message
    engine.close()
