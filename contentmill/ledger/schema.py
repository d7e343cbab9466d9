"""The ledger's tables as the code uses them now (``migrations.py`` is what builds them in a database).

Timestamps are stored in UTC on both engines: PostgreSQL keeps ``timestamptz``; SQLite has no time zone
type, so UTC wall time is stored and UTC is put back on read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement, FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from contentmill.ledger.records import as_utc


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware datetime in, an aware UTC datetime out, whatever the engine stores."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = as_utc(value)
        return moment.replace(tzinfo=None) if dialect.name == "sqlite" else moment

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
metadata = sa.MetaData()

calls = sa.Table(
    "calls", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("ts", UTCDateTime(), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("provider", sa.String(100), nullable=False),
    sa.Column("api_type", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error_type", sa.String(100)),
    sa.Column("est_input_tokens", sa.BigInteger, nullable=False),
    sa.Column("est_output_tokens", sa.BigInteger, nullable=False),
    sa.Column("est_characters", sa.BigInteger, nullable=False),
    sa.Column("est_seconds", sa.Double, nullable=False),
    sa.Column("est_images", sa.Integer, nullable=False),
    sa.Column("input_tokens", sa.BigInteger),
    sa.Column("output_tokens", sa.BigInteger),
    sa.Column("cached_input_tokens", sa.BigInteger),
    sa.Column("characters", sa.BigInteger),
    sa.Column("seconds", sa.Double),
    sa.Column("images", sa.Integer),
    sa.Column("usage_estimated", sa.Boolean),
    sa.Column("cost_usd", sa.Double, nullable=False),
    sa.Column("reserved_usd", sa.Double, nullable=False),
    sa.Column("saved_usd", sa.Double, nullable=False),
    sa.Column("latency_s", sa.Double, nullable=False),
    sa.Column("admission_wait_s", sa.Double, nullable=False, server_default="0"),
    sa.Column("retries", sa.Integer, nullable=False),
    sa.Column("cache_status", sa.String(32), nullable=False),
    sa.Column("request_hash", sa.String(128), nullable=False),
    sa.Column("reservation_id", sa.String(64)),
    sa.Column("flagged", sa.Boolean, nullable=False),
    sa.Column("tags", JSONType, nullable=False),
    sa.Index("ix_calls_ts", "ts"),
    sa.Index("ix_calls_model_ts", "model", "ts"),
    sa.Index("ix_calls_reservation", "reservation_id"),
)

call_tags = sa.Table(
    "call_tags", metadata,
    sa.Column("call_id", sa.String(32), sa.ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
    sa.Index("ix_call_tags_key_value", "key", "value", "call_id"),
)

budgets = sa.Table(
    "budgets", metadata,
    sa.Column("scope_key", sa.String(64), primary_key=True),
    sa.Column("scope_value", sa.String(256), primary_key=True),
    sa.Column("period", sa.String(8), primary_key=True),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("limit_usd", sa.Double, nullable=False),
    sa.Column("soft_pct", sa.Double, nullable=False),
    sa.Column("hard", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

alerts = sa.Table(
    "alerts", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("ts", UTCDateTime(), nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("subject", sa.String(300), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("data", JSONType, nullable=False),
    sa.Column("delivered", JSONType, nullable=False),
    sa.Index("ix_alerts_ts", "ts"),
    sa.Index("ix_alerts_rule_subject_ts", "rule", "subject", "ts"),
)

route_decisions = sa.Table(
    "route_decisions", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("ts", UTCDateTime(), nullable=False),
    sa.Column("request_hash", sa.String(128), nullable=False),
    sa.Column("task_kind", sa.String(64), nullable=False),
    sa.Column("chosen_model", sa.String(200), nullable=False),
    sa.Column("tier", sa.String(32)),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("weights", JSONType, nullable=False),
    sa.Column("candidates", JSONType, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("downgraded_from", sa.String(32)),
    sa.Index("ix_route_decisions_request_hash", "request_hash"),
    sa.Index("ix_route_decisions_ts", "ts"),
)

quality_scores = sa.Table(
    "quality_scores", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("ts", UTCDateTime(), nullable=False),
    sa.Column("call_id", sa.String(32)),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("template_version", sa.String(100)),
    sa.Column("scorer", sa.String(32), nullable=False),
    sa.Column("score", sa.Double, nullable=False),
    sa.Column("tags", JSONType, nullable=False),
    sa.Index("ix_quality_scores_model_ts", "model", "ts"),
    sa.Index("ix_quality_scores_call", "call_id"),
)

experiments = sa.Table(
    "experiments", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("arms", JSONType, nullable=False),
    sa.Column("split", JSONType, nullable=False),
    sa.Column("metric", sa.String(32), nullable=False),
    sa.Column("winner", sa.String(100)),
    sa.Column("stopped_at", UTCDateTime()),
    sa.Column("notes", JSONType, nullable=False),
)

virtual_keys = sa.Table(
    "virtual_keys", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("hint", sa.String(16), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("team", sa.String(256), nullable=False),
    sa.Column("project", sa.String(256)),
    sa.Column("user", sa.String(256)),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("budget_usd", sa.Double),
    sa.Column("period", sa.String(8), nullable=False),
    sa.Column("rpm", sa.Integer),
    sa.Column("tpm", sa.Integer),
    sa.Column("models", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime()),
    sa.Column("revoked_at", UTCDateTime()),
    sa.Column("rotated_at", UTCDateTime()),
    sa.Index("ix_virtual_keys_key_hash", "key_hash", unique=True),
)

studio_runs = sa.Table(
    "studio_runs", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("team", sa.String(256), nullable=False),
    sa.Column("key_id", sa.String(32)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("topic", sa.String(200), nullable=False),
    sa.Column("request", JSONType, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("steps", JSONType, nullable=False),
    sa.Column("cost_usd", sa.Double, nullable=False),
    sa.Column("saved_usd", sa.Double, nullable=False),
    sa.Column("title", sa.String(300)),
    sa.Column("folder", sa.String(300)),
    sa.Column("files", JSONType),
    sa.Column("duration_s", sa.Double),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("error", sa.Text),
    sa.Index("ix_studio_runs_team_created", "team", "created_at"),
    sa.Index("ix_studio_runs_folder", "folder"),
)

schema_version = sa.Table(
    "schema_version", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", UTCDateTime(), nullable=False),
)

BUCKETS = ("hour", "day")


class InlinedWord(FunctionElement[Any]):
    """A SQL function of a column and one word written into its SQL rather than bound, so SELECT and GROUP BY render
    the same expression; subclasses check the word (a closed set or a strict pattern) and it is part of the
    statement cache key."""

    inherit_cache = True
    _traverse_internals = FunctionElement._traverse_internals + [("word", InternalTraversal.dp_string)]

    def __init__(self, column: ColumnElement[Any], word: str) -> None:
        self.word = word
        super().__init__(column)


class bucket_start(InlinedWord):  # noqa: N801 - a SQL function, named like one
    """The UTC hour or day an instant falls in, computed by the database so grouping happens there."""

    type = UTCDateTime()
    inherit_cache = True

    def __init__(self, column: ColumnElement[Any], unit: str) -> None:
        if unit not in BUCKETS:
            raise ValueError(f"bucket must be one of {', '.join(BUCKETS)} (got {unit!r})")
        super().__init__(column, unit)


@compiles(bucket_start, "postgresql")
def _bucket_pg(element: bucket_start, compiler: SQLCompiler, **kw: Any) -> str:
    # The unit is inlined (it is one of BUCKETS) so SELECT and GROUP BY render the same expression.
    return f"date_trunc('{element.word}', {compiler.process(element.clauses, **kw)}, 'UTC')"


@compiles(bucket_start, "sqlite")
def _bucket_sqlite(element: bucket_start, compiler: SQLCompiler, **kw: Any) -> str:
    pattern = "%Y-%m-%d %H:00:00" if element.word == "hour" else "%Y-%m-%d 00:00:00"
    return f"strftime('{pattern}', {compiler.process(element.clauses, **kw)})"
