"""Anomalies: a 4x spike alerts in its own bucket and not before, on plain series and from the ledger."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from ledger_helpers import T0, call

from contentmill.errors import LedgerError
from contentmill.ledger import AlertEngine, AnomalyConfig, LedgerStore, SpendAnomaly, detect
from contentmill.ledger.anomaly import bucket_floor, ledger_series
from contentmill.metering import Usage

NOISE = [1.00, 1.08, 0.93, 1.05, 0.97, 1.10, 0.91, 1.02, 0.95, 1.06, 0.98, 1.04]  # +-10% around 1


def noisy(n: int, level: float = 10_000.0) -> list[float]:
    return [level * NOISE[i % len(NOISE)] for i in range(n)]


def test_a_4x_spike_is_found_in_its_bucket_only() -> None:
    series = noisy(48) + [40_000.0] + noisy(12)
    hits = detect(series)
    assert [hit.index for hit in hits] == [48]
    assert hits[0].ratio == pytest.approx(40_000 / hits[0].mean) and hits[0].ratio > 3.9
    assert hits[0].z > 3


def test_a_flat_history_does_not_make_a_small_blip_an_alert() -> None:
    # History exactly flat at 100: std 0, so the floor (10% of the mean = 10) is the scale.
    assert detect([100.0] * 30 + [125.0]) == []  # z = 2.5
    (hit,) = detect([100.0] * 30 + [400.0])
    assert (hit.index, hit.mean, hit.std, hit.z) == (30, 100.0, 10.0, pytest.approx(30.0))


def test_nothing_is_judged_without_enough_history_or_any_scale() -> None:
    assert detect([100.0, 100.0, 100.0, 400.0]) == []  # 3 buckets < min_history 6
    assert detect([0.0] * 20 + [5.0]) == []  # a series that was exactly zero has no scale
    assert [h.index for h in detect([0.0] * 19 + [1.0] + [500.0])] == [20]


def test_only_the_window_counts_as_history() -> None:
    series = [1000.0] * 10 + [100.0] * 24 + [400.0]
    assert [h.index for h in detect(series, AnomalyConfig(window=24))] == [34]
    assert detect(series, AnomalyConfig(window=34, min_history=6)) == []  # the old 1000s mask it


def test_the_threshold_and_floors_are_configurable() -> None:
    series = [100.0] * 30 + [125.0]
    assert [h.index for h in detect(series, AnomalyConfig(threshold=2.0))] == [30]
    assert detect([100.0] * 30 + [400.0], AnomalyConfig(min_std=500.0)) == []
    with pytest.raises(LedgerError):
        AnomalyConfig(window=5, min_history=6)


def hour(h: int) -> datetime:
    return T0 + timedelta(hours=h)


@pytest.fixture
def traffic(store: LedgerStore) -> LedgerStore:
    """31 hours of two teams' traffic, two calls an hour; team ads spikes 4x in hour 30."""
    records = []
    for h, level in enumerate(noisy(30, 10_000.0) + [40_000.0]):
        for minute in (10, 40):
            half = int(level / 2)
            records.append(
                call(
                    ts=hour(h) + timedelta(minutes=minute),
                    usage=Usage(half // 2, half - half // 2),
                    tags={"team": "ads"},
                )
            )
        records.append(
            call(ts=hour(h) + timedelta(minutes=20), usage=Usage(3000, 1000), tags={"team": "shop"})
        )
    store.write_calls(records)
    return store


def test_the_ledger_series_is_zero_filled_per_team(traffic: LedgerStore) -> None:
    starts, series = ledger_series(
        traffic, "team", metric="tokens", bucket="hour", since=hour(-2), until=hour(3)
    )
    assert starts == [hour(h) for h in range(-2, 3)]
    assert series["shop"] == [0.0, 0.0, 4000.0, 4000.0, 4000.0]
    assert series["ads"][:2] == [0.0, 0.0] and series["ads"][2] == pytest.approx(10_000, abs=2)


def test_the_spike_alerts_in_its_own_hour_and_not_before(traffic: LedgerStore) -> None:
    engine = AlertEngine(traffic, [SpendAnomaly(by="team", metric="tokens", bucket="hour")], sinks=[])
    fired_at = {}
    for h in range(32):
        # Judged late in each hour, with everything up to then recorded (later hours are in the ledger too,
        # and must be ignored).
        fired_at[h] = engine.evaluate(hour(h) + timedelta(minutes=50))
    assert {h: len(alerts) for h, alerts in fired_at.items() if alerts} == {30: 1}
    (alert,) = fired_at[30]
    assert alert.data["value"] == "ads" and alert.data["bucket"] == hour(30).isoformat()
    assert alert.data["amount"] == 40_000 and alert.data["z"] > 3
    assert "4.0x its recent mean" in alert.message
    assert [a.rule for a in traffic.alerts()] == ["anomaly"]
    engine.close()


def test_a_spike_is_seen_before_its_hour_ends(traffic: LedgerStore) -> None:
    engine = AlertEngine(traffic, [SpendAnomaly()], sinks=[])
    # At minute 15 only the first of the hour's two calls is in: 20,000 tokens, already 2x the mean, and with
    # the std floor of 1,000 that is z ~ 10. A bucket's value so far only grows, so alerting early is safe.
    (alert,) = engine.evaluate(hour(30) + timedelta(minutes=15))
    assert alert.data["amount"] == 20_000 and alert.data["bucket"] == hour(30).isoformat()
    # The same bucket does not alert again when its second half arrives.
    assert engine.evaluate(hour(30) + timedelta(minutes=50)) == []
    engine.close()


def test_spend_anomalies_use_the_cost_metric(store: LedgerStore) -> None:
    store.write_calls([call(ts=hour(h), cost_usd=1.0 if h < 12 else 5.0) for h in range(13)])
    engine = AlertEngine(store, [SpendAnomaly(metric="cost", by="project")], sinks=[])
    (alert,) = engine.evaluate(hour(12) + timedelta(minutes=1))
    assert alert.data["value"] == "spring" and alert.data["amount"] == 5.0 and "USD" in alert.message
    engine.close()


def test_buckets_are_utc_hours_and_days() -> None:
    moment = datetime.fromisoformat("2025-05-01T13:45:10+02:00")
    assert bucket_floor(moment, "hour").isoformat() == "2025-05-01T11:00:00+00:00"
    assert bucket_floor(moment, "day").isoformat() == "2025-05-01T00:00:00+00:00"
