"""Reports group in SQL by any column or tag, per hour or day, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import timedelta

import pytest
from ledger_helpers import T0, call

from contentmill.errors import LedgerError
from contentmill.ledger import LedgerStore, report
from contentmill.metering import Usage

H = timedelta(hours=1)
UNTIL = T0 + timedelta(days=2)


@pytest.fixture
def traffic(store: LedgerStore) -> LedgerStore:
    """Seven calls over two days, three teams, two projects, text and speech, one cache hit, one error."""
    store.write_calls(
        [
            call(
                ts=T0,
                cost_usd=1.0,
                usage=Usage(100, 50),
                tags={"team": "ads", "project": "spring", "job": "j1"},
            ),
            call(
                ts=T0 + H / 2, cost_usd=2.0, usage=Usage(200, 100), tags={"team": "ads", "project": "autumn"}
            ),
            call(
                ts=T0 + H,
                cost_usd=4.0,
                usage=Usage(400, 200),
                model="deepseek:deepseek-chat",
                tags={"team": "shop", "project": "spring", "job": "j1"},
            ),
            call(
                ts=T0 + 2 * H,
                cost_usd=8.0,
                model="openai:tts-1",
                api_type="speech",
                usage=Usage(characters=1000, seconds=60.0),
                estimate=Usage(characters=1000),
                tags={"team": "video"},
            ),
            call(
                ts=T0 + 2 * H,
                cost_usd=0.0,
                saved_usd=1.5,
                outcome="cached",
                cache_status="hit:memory",
                tags={"team": "ads", "project": "spring"},
            ),
            call(ts=T0 + timedelta(days=1), cost_usd=16.0, usage=Usage(1600, 800), tags={"team": "shop"}),
            call(
                ts=T0 + timedelta(days=1, hours=1),
                usage=None,
                cost_usd=0.0,
                outcome="error",
                error_type="ProviderTimeout",
                tags={},
            ),
        ]
    )
    return store


def by_key(rows: list[dict[str, object]], key: str) -> dict[object, dict[str, object]]:
    return {row[key]: row for row in rows}


def test_by_team_sums_spend_tokens_and_savings(traffic: LedgerStore) -> None:
    result = report(traffic, "team", T0, UNTIL)
    rows = by_key(result.rows, "team")
    assert set(rows) == {"ads", "shop", "video", None}
    assert rows["ads"]["calls"] == 3 and rows["ads"]["cost_usd"] == pytest.approx(3.0)
    assert rows["ads"]["saved_usd"] == pytest.approx(1.5) and rows["ads"]["cache_hits"] == 1
    assert rows["ads"]["input_tokens"] == 100 + 200 + 100 and rows["ads"]["output_tokens"] == 50 + 100 + 50
    assert rows["shop"]["cost_usd"] == pytest.approx(20.0) and rows["shop"]["input_tokens"] == 2000
    assert rows["video"]["characters"] == 1000 and rows["video"]["seconds"] == pytest.approx(60.0)
    assert rows[None]["errors"] == 1 and rows[None]["input_tokens"] == 0
    assert [row["team"] for row in result.rows] == ["shop", "video", "ads", None]  # largest spend first
    total = result.total
    assert total["calls"] == 7 and total["cost_usd"] == pytest.approx(31.0) and total["saved_usd"] == 1.5
    assert isinstance(total["calls"], int) and isinstance(total["input_tokens"], int)


def test_by_project_api_type_model_and_provider(traffic: LedgerStore) -> None:
    projects = by_key(report(traffic, "project", T0, UNTIL).rows, "project")
    assert projects["spring"]["cost_usd"] == pytest.approx(5.0) and projects["autumn"]["calls"] == 1
    api_types = by_key(report(traffic, "api_type", T0, UNTIL).rows, "api_type")
    assert api_types["speech"]["cost_usd"] == pytest.approx(8.0) and api_types["text"]["calls"] == 6
    models = by_key(report(traffic, "model", T0, UNTIL).rows, "model")
    assert models["deepseek:deepseek-chat"]["cost_usd"] == pytest.approx(4.0)
    assert models["openai:gpt-4o-mini"]["cost_usd"] == pytest.approx(19.0)
    providers = by_key(report(traffic, "provider", T0, UNTIL).rows, "provider")
    assert providers["openai"]["cost_usd"] == pytest.approx(27.0)
    outcomes = by_key(report(traffic, "outcome", T0, UNTIL).rows, "outcome")
    assert outcomes["cached"]["saved_usd"] == 1.5 and outcomes["error"]["calls"] == 1


def test_by_any_tag_and_by_two_dimensions(traffic: LedgerStore) -> None:
    jobs = by_key(report(traffic, "job", T0, UNTIL).rows, "job")
    assert (
        jobs["j1"]["calls"] == 2 and jobs["j1"]["cost_usd"] == pytest.approx(5.0) and jobs[None]["calls"] == 5
    )
    pairs = {
        (r["team"], r["project"]): r["cost_usd"] for r in report(traffic, ["team", "project"], T0, UNTIL).rows
    }
    assert pairs[("ads", "spring")] == pytest.approx(1.0) and pairs[("ads", "autumn")] == pytest.approx(2.0)
    assert pairs[("shop", None)] == pytest.approx(16.0) and pairs[("shop", "spring")] == pytest.approx(4.0)


def test_by_hour_and_by_day_buckets(traffic: LedgerStore) -> None:
    hourly = report(traffic, "team", T0, T0 + 3 * H, bucket="hour")
    cells = {(r["bucket"], r["team"]): r["cost_usd"] for r in hourly.rows}
    assert cells == {
        (T0.isoformat(), "ads"): pytest.approx(3.0),
        ((T0 + H).isoformat(), "shop"): pytest.approx(4.0),
        ((T0 + 2 * H).isoformat(), "video"): pytest.approx(8.0),
        ((T0 + 2 * H).isoformat(), "ads"): 0.0,
    }
    assert [r["bucket"] for r in hourly.rows] == sorted(r["bucket"] for r in hourly.rows)
    daily = report(traffic, [], T0, UNTIL, bucket="day")
    assert [(r["bucket"], r["calls"], r["cost_usd"]) for r in daily.rows] == [
        (T0.isoformat(), 5, pytest.approx(15.0)),
        ((T0 + timedelta(days=1)).isoformat(), 2, pytest.approx(16.0)),
    ]


def test_the_window_is_half_open(traffic: LedgerStore) -> None:
    assert report(traffic, "team", T0, T0 + H).total["calls"] == 2
    assert report(traffic, "team", T0 + H, T0 + 2 * H).total["calls"] == 1


def test_as_dict_is_json_ready(traffic: LedgerStore) -> None:
    data = report(traffic, "api_type", T0, UNTIL, bucket="day").as_dict()
    assert data["by"] == ["api_type"] and data["bucket"] == "day" and data["since"] == T0.isoformat()
    assert data["total"]["calls"] == 7 and all(isinstance(row["bucket"], str) for row in data["rows"])


@pytest.mark.parametrize(("by", "problem"), [("calls", "report column"), ("no such!", "cannot group")])
def test_bad_dimensions_are_refused(store: LedgerStore, by: str, problem: str) -> None:
    with pytest.raises(LedgerError, match=problem):
        report(store, by, T0, UNTIL)


def test_bad_windows_and_buckets_are_refused(store: LedgerStore) -> None:
    with pytest.raises(LedgerError, match="must be after"):
        report(store, "team", UNTIL, T0)
    with pytest.raises(LedgerError, match="bucket"):
        report(store, "team", T0, UNTIL, bucket="week")
