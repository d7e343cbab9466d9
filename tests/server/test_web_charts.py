"""The dashboard's server-drawn SVG: axis tops, one bar piece per non-zero value, anomaly marks, escaped names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contentmill.ledger import Anomaly
from contentmill.server.web.charts import axis_usd, nice_ceiling, stacked_bars
from contentmill.server.web.overview import Series


@pytest.mark.parametrize(("value", "top"), [(0.0, 1.0), (0.9, 1.0), (1.2, 2.0), (2.2, 2.5), (3.1, 5.0),
                                            (7.0, 10.0), (0.00043, 0.0005), (180.0, 200.0)])
def test_the_axis_top_is_a_round_number_at_or_above_the_highest_bar(value: float, top: float) -> None:
    assert nice_ceiling(value) == pytest.approx(top)


def test_axis_labels_show_as_many_decimals_as_the_scale_needs() -> None:
    assert [axis_usd(v, 250.0) for v in (0.0, 125.0)] == ["$0", "$125"]
    assert axis_usd(0.00025, 0.0005) == "$0.000250"


def test_stacked_bars_draw_each_value_mark_anomalies_and_escape_names() -> None:
    starts = [datetime(2026, 5, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(4)]
    series = [Series("<script>alert(1)</script>", [1.0, 0.0, 2.0, 0.5], 3.5), Series("ads", [0.5, 0.5, 0.0, 9.0], 10.0)]
    spike = Anomaly(index=3, value=9.0, mean=0.5, std=0.1, z=85.0, subject="ads", bucket=starts[3])
    svg = str(stacked_bars(starts, series, [spike], "hour"))
    assert svg.count("<rect") == 6  # the two zero values draw nothing
    assert svg.count('class="anomaly"') == 1 and "z = 85.0" in svg
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert 'viewBox="0 0 960 300"' in svg
