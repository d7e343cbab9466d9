"""Spikes in a tag's per-bucket token or spend rate, by z-score against its own recent history.

Each bucket is compared with the ``window`` buckets before it: z = (value - mean) / std. Two guards keep
quiet series from alerting on noise: the std used is at least ``rel_std_floor`` x mean (and ``min_std``),
so a perfectly flat history does not turn every blip into infinity; and nothing is judged before
``min_history`` buckets exist (counted from a group's first activity in the window, so a tag that just
started is not a spike of its own silence). Only rises are reported: a drop in spend is not a cost
risk. The current, unfinished bucket is judged too: its value so far can only grow, so a spike seen
early is real.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from contentmill.errors import LedgerError
from contentmill.ledger.records import as_utc
from contentmill.ledger.report import report
from contentmill.ledger.store import LedgerStore

Metric = Literal["tokens", "cost"]
BUCKET_LENGTH = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


@dataclass(frozen=True, slots=True)
class AnomalyConfig:
    """How anomalies are judged; the defaults suit hourly buckets over the previous day."""

    window: int = 24
    threshold: float = 3.0
    min_history: int = 6
    rel_std_floor: float = 0.1
    min_std: float = 0.0

    def __post_init__(self) -> None:
        if self.window < 2 or not 2 <= self.min_history <= self.window:
            raise LedgerError("anomaly window must be >= 2 and min_history between 2 and window")
        if self.threshold <= 0 or self.rel_std_floor < 0 or self.min_std < 0:
            raise LedgerError("anomaly threshold must be positive and the std floors non-negative")


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One bucket whose value stood ``z`` effective standard deviations above its history's mean."""

    index: int
    value: float
    mean: float
    std: float
    z: float
    subject: str | None = None
    bucket: datetime | None = None

    @property
    def ratio(self) -> float:
        """The value as a multiple of the history's mean (inf when the mean is 0)."""
        return self.value / self.mean if self.mean else math.inf


def zscore(
    history: Sequence[float], value: float, config: AnomalyConfig
) -> tuple[float, float, float] | None:
    """(z, mean, effective std) of ``value`` against ``history``; None when the history cannot judge."""
    if len(history) < config.min_history:
        return None
    mean = sum(history) / len(history)
    std = math.sqrt(sum((x - mean) ** 2 for x in history) / len(history))
    floor = max(config.min_std, config.rel_std_floor * abs(mean))
    effective = max(std, floor)
    if effective == 0:  # a series that was exactly zero: no scale to judge a first value against
        return None
    return (value - mean) / effective, mean, effective


def detect(
    series: Sequence[float], config: AnomalyConfig | None = None, *, start: int = 0, origin: int = 0
) -> list[Anomaly]:
    """Anomalous buckets of a plain series: bucket ``i`` is judged against the ``window`` before it.

    Buckets before ``origin`` are not history (e.g. the zero-filled time before a tag's first call), and
    buckets before ``start`` are not judged.
    """
    config = config or AnomalyConfig()
    found = []
    for index in range(max(start, origin + config.min_history), len(series)):
        history = series[max(origin, index - config.window) : index]
        judged = zscore(history, series[index], config)
        if judged is not None and judged[0] > config.threshold:
            z, mean, std = judged
            found.append(Anomaly(index=index, value=series[index], mean=mean, std=std, z=z))
    return found


def bucket_floor(moment: datetime, bucket: str) -> datetime:
    """The UTC start of the hour or day ``moment`` falls in (the same buckets reports use)."""
    moment = as_utc(moment)
    if bucket == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    raise LedgerError(f"bucket must be one of {', '.join(BUCKET_LENGTH)} (got {bucket!r})")


def bucket_starts(since: datetime, until: datetime, bucket: str) -> list[datetime]:
    """The starts of the buckets from the one holding ``since`` to the last one before ``until``."""
    starts = []
    cursor, step = bucket_floor(since, bucket), BUCKET_LENGTH[bucket]
    while cursor < as_utc(until):
        starts.append(cursor)
        cursor += step
    return starts


def series_of(
    rows: Sequence[Mapping[str, Any]], by: str, metric: Metric, starts: Sequence[datetime]
) -> dict[str | None, list[float]]:
    """A bucketed report's rows as one zero-filled series of ``metric`` per value of ``by`` (rows that also split by
    another dimension are summed into it)."""
    position = {start: i for i, start in enumerate(starts)}
    series: dict[str | None, list[float]] = {}
    for row in rows:
        values = series.setdefault(row[by], [0.0] * len(starts))
        amount = row["cost_usd"] if metric == "cost" else row["input_tokens"] + row["output_tokens"]
        values[position[datetime.fromisoformat(row["bucket"]).astimezone(UTC)]] += float(amount)
    return series


def ledger_series(
    store: LedgerStore, by: str, *, metric: Metric, bucket: str, since: datetime, until: datetime
) -> tuple[list[datetime], dict[str | None, list[float]]]:
    """Per-bucket totals of ``metric`` for each value of ``by``, zero-filled, buckets from ``since``'s."""
    starts = bucket_starts(since, until, bucket)
    return starts, series_of(report(store, by, starts[0], until, bucket=bucket).rows, by, metric, starts)


def scan(
    store: LedgerStore,
    by: str,
    now: datetime,
    *,
    metric: Metric = "tokens",
    bucket: str = "hour",
    config: AnomalyConfig | None = None,
    judge_last: int = 2,
) -> list[Anomaly]:
    """Anomalies among the last ``judge_last`` buckets up to ``now`` (the current one included) per group."""
    config = config or AnomalyConfig()
    current = bucket_floor(now, bucket)
    step = BUCKET_LENGTH[bucket]
    since = current - step * (config.window + judge_last - 1)
    # Up to ``now`` only: the ledger may already hold later calls (a replay, or clocks a little apart).
    starts, series = ledger_series(store, by, metric=metric, bucket=bucket, since=since, until=as_utc(now))
    return series_anomalies(starts, series, config, start=len(starts) - judge_last)


def series_anomalies(
    starts: Sequence[datetime], series: Mapping[str | None, Sequence[float]], config: AnomalyConfig, *,
    start: int = 0,
) -> list[Anomaly]:
    """Anomalies of every group's series (from bucket ``start`` on), each naming its group and bucket."""
    found = []
    for subject, values in series.items():
        # History starts at the group's first activity in the window, not at zero-filled time before it.
        origin = next((i for i, value in enumerate(values) if value), len(values))
        for hit in detect(values, config, start=start, origin=origin):
            found.append(
                Anomaly(
                    index=hit.index, value=hit.value, mean=hit.mean, std=hit.std, z=hit.z,
                    subject=subject, bucket=starts[hit.index],
                )
            )
    return found
