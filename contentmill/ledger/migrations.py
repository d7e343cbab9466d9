"""Schema migrations of the ledger, applied in order when a store opens (see ``contentmill.sqlstore``).

A step's table definitions are frozen as released; a later change to ``schema.py`` needs a new step here, and
the test suite compares a migrated database with ``schema.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from contentmill import sqlstore
from contentmill.errors import LedgerError, LedgerUnavailable
from contentmill.ledger.schema import JSONType, UTCDateTime, schema_version
from contentmill.sqlstore import Migration, StoreKind

__all__ = ["LEDGER", "MIGRATIONS", "PG_LOCK_KEY", "Migration", "current_version", "migrate"]

LEDGER = StoreKind("ledger", "ledger.sqlite3", LedgerError, LedgerUnavailable)
# pg_advisory_xact_lock key: the bytes of "cmledger" read as a signed 64-bit integer.
PG_LOCK_KEY = int.from_bytes(b"cmledger", "big", signed=True)


def _v1_tables(conn: Connection) -> None:
    """The first schema: calls and their tags, reservations, budgets, alerts."""
    md = sa.MetaData()
    sa.Table(
        "calls", md,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("api_type", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error_type", sa.String(100)),
        *(sa.Column(f"est_{n}", sa.BigInteger, nullable=False) for n in ("input_tokens", "output_tokens")),
        sa.Column("est_characters", sa.BigInteger, nullable=False),
        sa.Column("est_seconds", sa.Double, nullable=False),
        sa.Column("est_images", sa.Integer, nullable=False),
        *(sa.Column(n, sa.BigInteger) for n in ("input_tokens", "output_tokens", "cached_input_tokens")),
        sa.Column("characters", sa.BigInteger),
        sa.Column("seconds", sa.Double),
        sa.Column("images", sa.Integer),
        sa.Column("usage_estimated", sa.Boolean),
        *(sa.Column(n, sa.Double, nullable=False) for n in ("cost_usd", "reserved_usd", "saved_usd")),
        sa.Column("latency_s", sa.Double, nullable=False),
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
    sa.Table(
        "call_tags", md,
        sa.Column("call_id", sa.String(32), sa.ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Index("ix_call_tags_key_value", "key", "value", "call_id"),
    )
    sa.Table(
        "reservations", md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("deadline", UTCDateTime(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("api_type", sa.String(16), nullable=False),
        sa.Column("reserved_usd", sa.Double, nullable=False),
        sa.Column("estimate", JSONType, nullable=False),
        sa.Column("tags", JSONType, nullable=False),
        sa.Column("request_hash", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("settled_at", UTCDateTime()),
        sa.Index("ix_reservations_state_deadline", "state", "deadline"),
    )
    sa.Table(
        "budgets", md,
        sa.Column("scope_key", sa.String(64), primary_key=True),
        sa.Column("scope_value", sa.String(256), primary_key=True),
        sa.Column("period", sa.String(8), primary_key=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("limit_usd", sa.Double, nullable=False),
        sa.Column("soft_pct", sa.Double, nullable=False),
        sa.Column("hard", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    sa.Table(
        "alerts", md,
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
    md.create_all(conn)


def _v2_routing_tables(conn: Connection) -> None:
    """Routing memory: each model choice with its candidates, quality scores, prompt experiments."""
    md = sa.MetaData()
    sa.Table(
        "route_decisions", md,
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
    sa.Table(
        "quality_scores", md,
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
    sa.Table(
        "experiments", md,
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
    md.create_all(conn)


def _v3_virtual_keys(conn: Connection) -> None:
    """Virtual keys of the gateway server: only a hash of each secret, the owner's tags and the key's limits."""
    md = sa.MetaData()
    sa.Table(
        "virtual_keys", md,
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
    md.create_all(conn)


def _v4_studio_runs(conn: Connection) -> None:
    """The studio's video runs: whose they are, what was asked, each step's progress and cost, the result."""
    md = sa.MetaData()
    sa.Table(
        "studio_runs", md,
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
    md.create_all(conn)


def _v5_drop_ledger_reservations(conn: Connection) -> None:
    """Money held for calls in flight is the admission's (memory, SQLite or Redis with its journal); the
    ledger's own reservations table was never written outside tests."""
    conn.execute(sa.text("DROP TABLE IF EXISTS reservations"))


def _v6_admission_wait(conn: Connection) -> None:
    """A call's wait for our own limits, apart from the provider's latency (rows before it waited 0)."""
    double = sa.Double().compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE calls ADD COLUMN admission_wait_s {double} NOT NULL DEFAULT 0"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "calls, call_tags, reservations, budgets, alerts", _v1_tables),
    Migration(2, "route_decisions, quality_scores, experiments", _v2_routing_tables),
    Migration(3, "virtual_keys", _v3_virtual_keys),
    Migration(4, "studio_runs", _v4_studio_runs),
    Migration(5, "drop the unused reservations table", _v5_drop_ledger_reservations),
    Migration(6, "calls.admission_wait_s", _v6_admission_wait),
)


def migrate(engine: Engine, steps: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Bring the ledger up to the last step; returns the versions applied now (empty when up to date)."""
    return sqlstore.migrate(engine, steps, version_table=schema_version, lock_key=PG_LOCK_KEY, kind=LEDGER)


def current_version(engine: Engine) -> int:
    return sqlstore.current_version(engine, schema_version)
