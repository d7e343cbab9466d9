"""Spend and usage grouped by any dimension (a call column or any tag), optionally per hour or day.

Grouping and sums run in the database, in SQL that SQLite and PostgreSQL both accept, so a report over
millions of calls moves only its rows. A call without the grouped tag falls in a ``None`` group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from contentmill.errors import LedgerError
from contentmill.ledger.records import TAG_KEY, as_utc
from contentmill.ledger.schema import BUCKETS, InlinedWord, bucket_start, calls
from contentmill.ledger.store import LedgerStore

COLUMN_DIMENSIONS = ("api_type", "model", "provider", "outcome", "cache_status", "error_type")
INT_METRICS = (
    "calls", "input_tokens", "output_tokens", "cached_input_tokens", "characters", "images",
    "errors", "refused", "orphaned", "cache_hits",
)
FLOAT_METRICS = ("cost_usd", "saved_usd", "seconds")
METRICS = ("calls", "cost_usd", "saved_usd", "input_tokens", "output_tokens", "cached_input_tokens",
           "characters", "seconds", "images", "errors", "refused", "orphaned", "cache_hits", "admission_wait_s")


def _count_of(outcome: str) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(sa.func.sum(sa.case((calls.c.outcome == outcome, 1), else_=0)), 0)


def _metric_columns() -> list[sa.ColumnElement[Any]]:
    charged = calls.c.outcome.not_in(("cached", "refused"))
    usage = ("input_tokens", "output_tokens", "cached_input_tokens", "characters", "seconds", "images")
    total = {name: sa.func.coalesce(sa.func.sum(calls.c[name]), 0) for name in usage}
    columns = {
        "calls": sa.func.count(calls.c.id),
        "cost_usd": sa.func.coalesce(sa.func.sum(sa.case((charged, calls.c.cost_usd), else_=0.0)), 0.0),
        "saved_usd": sa.func.coalesce(sa.func.sum(calls.c.saved_usd), 0.0),
        **total,
        "errors": _count_of("error"),
        "refused": _count_of("refused"),
        "orphaned": _count_of("orphaned"),
        "cache_hits": _count_of("cached"),
        "admission_wait_s": sa.func.coalesce(sa.func.sum(calls.c.admission_wait_s), 0.0),  # our limits' delay
    }
    return [columns[name].label(name) for name in METRICS]


def _plain(name: str, value: Any) -> int | float:
    if isinstance(value, Decimal):  # PostgreSQL sums bigint into numeric
        value = float(value)
    return int(value or 0) if name in INT_METRICS else float(value or 0.0)


@dataclass(frozen=True, slots=True)
class Report:
    """Rows of ``{dimension: value, [bucket: ISO start], metric: number}`` and their total."""

    by: tuple[str, ...]
    since: datetime
    until: datetime
    bucket: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> dict[str, int | float]:
        return {name: _plain(name, sum(row[name] for row in self.rows)) for name in METRICS}

    def as_dict(self) -> dict[str, Any]:
        return {
            "by": list(self.by), "bucket": self.bucket, "since": self.since.isoformat(),
            "until": self.until.isoformat(), "rows": self.rows, "total": self.total,
        }


class tag_value(InlinedWord):  # noqa: N801 - a SQL function, named like one
    """A call's value of one tag, read from the call's own ``tags`` document (NULL when it has none): the same
    values ``call_tags`` holds, without a join per call, so grouping by a tag costs about what grouping by a
    column does."""

    type = sa.String()
    inherit_cache = True

    def __init__(self, column: sa.ColumnElement[Any], key: str) -> None:
        if not TAG_KEY.match(key):
            raise LedgerError(f"{key!r} is not a tag name")
        super().__init__(column, key)


@compiles(tag_value, "postgresql")
def _tag_value_pg(element: tag_value, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)} ->> '{element.word}')"


@compiles(tag_value, "sqlite")
def _tag_value_sqlite(element: tag_value, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_extract({compiler.process(element.clauses, **kw)}, '$.\"{element.word}\"')"


def check_dimension(name: str) -> str:
    """A dimension is a call column (api_type, model, ...) or a tag key (team, project, job, ...)."""
    if name in METRICS or name == "bucket":
        raise LedgerError(f"cannot group by {name!r}: it names a report column; pick a tag or call column")
    if name not in COLUMN_DIMENSIONS and not TAG_KEY.match(name):
        raise LedgerError(
            f"cannot group by {name!r}: use one of {', '.join(COLUMN_DIMENSIONS)} or a tag name such as team"
        )
    return name


def grouped_query(
    by: Sequence[str], since: datetime, until: datetime, bucket: str | None
) -> tuple[sa.Select[Any], list[str]]:
    """The SELECT ... GROUP BY for a report and the names of its group columns."""
    if bucket is not None and bucket not in BUCKETS:
        raise LedgerError(f"bucket must be one of {', '.join(BUCKETS)} (got {bucket!r})")
    groups: list[sa.ColumnElement[Any]] = []
    for name in by:
        check_dimension(name)
        if name in COLUMN_DIMENSIONS:
            groups.append(calls.c[name].label(name))
            continue
        groups.append(tag_value(calls.c.tags, name).label(name))
    if bucket is not None:
        groups.append(bucket_start(calls.c.ts, bucket).label("bucket"))
    query = (
        sa.select(*groups, *_metric_columns())
        .select_from(calls)
        .where(calls.c.ts >= as_utc(since, "since"), calls.c.ts < as_utc(until, "until"))
        .group_by(*groups)
    )
    return query, [g.name for g in groups]


def report(
    store: LedgerStore,
    by: str | Sequence[str],
    since: datetime,
    until: datetime,
    *,
    bucket: str | None = None,
) -> Report:
    """Spend, usage and outcome counts per group in [since, until), largest spend first within a bucket."""
    dims = (by,) if isinstance(by, str) else tuple(by)
    if not dims and bucket is None:
        raise LedgerError("a report groups by at least one dimension or a time bucket")
    if as_utc(until, "until") <= as_utc(since, "since"):
        raise LedgerError(f"until ({until.isoformat()}) must be after since ({since.isoformat()})")
    query, names = grouped_query(dims, since, until, bucket)
    rows = []
    for raw in store.rows(query, "build a report"):
        row: dict[str, Any] = {name: raw[name] for name in names}
        if bucket is not None:
            row["bucket"] = as_utc(raw["bucket"]).isoformat()
        row.update({name: _plain(name, raw[name]) for name in METRICS})
        rows.append(row)
    rows.sort(key=lambda r: (r.get("bucket") or "", -r["cost_usd"], [str(r[n]) for n in dims]))
    return Report(by=dims, since=as_utc(since), until=as_utc(until), bucket=bucket, rows=rows)
