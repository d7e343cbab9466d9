"""The ledger database: SQLite (a WAL file) embedded, PostgreSQL with the services profile.

The engine, migrations on open and error mapping come from ``contentmill.sqlstore``. Every write is one
transaction that is committed before the method returns.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from contentmill.ledger.migrations import LEDGER, migrate
from contentmill.ledger.records import (
    Alert,
    Budget,
    CallRecord,
    as_utc,
)
from contentmill.ledger.schema import alerts, budgets, call_tags, calls
from contentmill.metering import Usage
from contentmill.settings import Settings
from contentmill.sqlstore import SQLStore, create_engine, database_url

log = logging.getLogger("contentmill.ledger")

LEDGER_FILE = "ledger.sqlite3"
COLUMN_SCOPES = ("api_type", "model", "provider")
ALL_SCOPE = "all"


def ledger_url(url: str | sa.URL) -> sa.URL:
    """A SQLAlchemy URL for ``url``: plain ``postgresql://`` uses psycopg 3; SQLite must be a file."""
    return database_url(url, LEDGER)


def settings_url(settings: Settings) -> str:
    """CONTENTMILL_DATABASE_URL when set, else ``ledger.sqlite3`` in CONTENTMILL_DATA_DIR."""
    if settings.database_url:
        return settings.database_url
    return f"sqlite:///{(settings.data_dir / LEDGER_FILE).expanduser().resolve()}"


def create_ledger_engine(url: str | sa.URL) -> Engine:
    return create_engine(url, LEDGER)


def _usage_columns(record: CallRecord) -> dict[str, Any]:
    est, used = record.estimate, record.usage
    return {
        "est_input_tokens": est.input_tokens, "est_output_tokens": est.output_tokens,
        "est_characters": est.characters, "est_seconds": est.seconds, "est_images": est.images,
        "input_tokens": used.input_tokens if used else None,
        "output_tokens": used.output_tokens if used else None,
        "cached_input_tokens": used.cached_input_tokens if used else None,
        "characters": used.characters if used else None,
        "seconds": used.seconds if used else None,
        "images": used.images if used else None,
        "usage_estimated": used.estimated if used else None,
    }


def call_row(record: CallRecord) -> dict[str, Any]:
    return {
        "id": record.id, "ts": record.ts, "model": record.model, "provider": record.provider,
        "api_type": record.api_type, "outcome": record.outcome, "error_type": record.error_type,
        **_usage_columns(record),
        "cost_usd": record.cost_usd, "reserved_usd": record.reserved_usd, "saved_usd": record.saved_usd,
        "latency_s": record.latency_s, "admission_wait_s": record.admission_wait_s,
        "retries": record.retries, "cache_status": record.cache_status,
        "request_hash": record.request_hash, "reservation_id": record.reservation_id,
        "flagged": record.flagged, "tags": dict(record.tags),
    }


def record_from_row(row: Row[Any]) -> CallRecord:
    return record_from_mapping(row._mapping)


def record_from_mapping(m: Mapping[Any, Any]) -> CallRecord:
    """A record from the columns of its row (as ``call_row`` gives them)."""
    estimate = Usage(
        input_tokens=m["est_input_tokens"], output_tokens=m["est_output_tokens"],
        characters=m["est_characters"], seconds=m["est_seconds"], images=m["est_images"], estimated=True,
    )
    usage = None
    if m["usage_estimated"] is not None:
        usage = Usage(
            input_tokens=m["input_tokens"], output_tokens=m["output_tokens"],
            cached_input_tokens=m["cached_input_tokens"], characters=m["characters"], seconds=m["seconds"],
            images=m["images"], estimated=m["usage_estimated"],
        )
    return CallRecord(
        id=m["id"], ts=m["ts"], model=m["model"], provider=m["provider"], api_type=m["api_type"],
        outcome=m["outcome"], error_type=m["error_type"], estimate=estimate, usage=usage,
        cost_usd=m["cost_usd"], reserved_usd=m["reserved_usd"], saved_usd=m["saved_usd"],
        latency_s=m["latency_s"], admission_wait_s=m.get("admission_wait_s") or 0.0,
        retries=m["retries"], cache_status=m["cache_status"],
        request_hash=m["request_hash"], reservation_id=m["reservation_id"], flagged=m["flagged"],
        tags=m["tags"],
    )


def _budget_from_row(row: Row[Any]) -> Budget:
    m = row._mapping
    return Budget(
        scope_key=m["scope_key"], scope_value=m["scope_value"], period=m["period"], timezone=m["timezone"],
        limit_usd=m["limit_usd"], soft_pct=m["soft_pct"], hard=m["hard"], created_at=m["created_at"],
    )


def _alert_from_row(row: Row[Any]) -> Alert:
    m = row._mapping
    return Alert(
        id=m["id"], ts=m["ts"], rule=m["rule"], severity=m["severity"], subject=m["subject"],
        message=m["message"], data=m["data"], delivered=m["delivered"],
    )


def scope_filter(
    query: sa.Select[Any], scope_key: str, scope_value: str, base: sa.FromClause = calls
) -> sa.Select[Any]:
    """Restrict a query over ``calls`` to one budget scope: a column, a tag, or ``all``."""
    if scope_key == ALL_SCOPE:
        return query
    if scope_key in COLUMN_SCOPES:
        return query.where(calls.c[scope_key] == scope_value)
    tag = call_tags.alias("scope_tag")
    joined = base.join(tag, sa.and_(tag.c.call_id == calls.c.id, tag.c.key == scope_key))
    return query.select_from(joined).where(tag.c.value == scope_value)


class LedgerStore(SQLStore):
    """Calls, budgets and alerts in one SQLite or PostgreSQL database."""

    kind = LEDGER

    def migrate(self) -> list[int]:
        return migrate(self.engine)

    def rows(self, query: sa.Select[Any], action: str) -> list[sa.RowMapping]:
        """Run a read-only query (reports build theirs from ``schema``)."""
        with self._read(action) as conn:
            return list(conn.execute(query).mappings())

    def transaction(self, action: str) -> AbstractContextManager[Connection]:
        """One committed write transaction for the tables beside the calls (routing decisions, quality scores,
        experiments); database errors come out as LedgerError naming ``action``."""
        return self._write(action)

    def insert_ignoring_duplicates(self, table: sa.Table) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING on ``table``'s primary key."""
        return self._insert_new(table)

    # calls -----------------------------------------------------------------------------------------------

    def _insert_calls(self, conn: Connection, records: Sequence[CallRecord]) -> None:
        self._bulk(calls).execute(conn, [call_row(r) for r in records])
        self._bulk(call_tags).execute(conn, [{"call_id": r.id, "key": k, "value": v}
                                             for r in records for k, v in r.tags.items()])

    def write_calls(self, records: Sequence[CallRecord]) -> int:
        """Insert a batch in one transaction; a record already stored (same id) is skipped."""
        if not records:
            return 0
        with self._write(f"write {len(records)} call records") as conn:
            self._insert_calls(conn, records)
        return len(records)

    def calls(
        self, since: datetime | None = None, until: datetime | None = None, *, limit: int | None = None
    ) -> list[CallRecord]:
        """Stored calls in time order, within [since, until)."""
        query = sa.select(calls).order_by(calls.c.ts, calls.c.id).limit(limit)
        if since is not None:
            query = query.where(calls.c.ts >= as_utc(since))
        if until is not None:
            query = query.where(calls.c.ts < as_utc(until))
        with self._read("read calls") as conn:
            return [record_from_row(row) for row in conn.execute(query)]

    def recorded_reservations(self, reservation_ids: Sequence[str]) -> set[str]:
        """Which of these reservations already have a call row (a reservation has at most one)."""
        found: set[str] = set()
        with self._read("look up reservations' call rows") as conn:
            for start in range(0, len(reservation_ids), 500):
                query = sa.select(calls.c.reservation_id).where(
                    calls.c.reservation_id.in_(reservation_ids[start:start + 500]))
                found.update(conn.scalars(query))
        return found

    def count_calls(self) -> int:
        with self._read("count calls") as conn:
            return conn.scalar(sa.select(sa.func.count()).select_from(calls)) or 0

    def spent(
        self, scope_key: str, scope_value: str, since: datetime, until: datetime | None = None
    ) -> float:
        """USD charged to a scope in [since, until); cache hits and refusals cost nothing."""
        query = sa.select(sa.func.coalesce(sa.func.sum(calls.c.cost_usd), 0.0)).where(
            calls.c.ts >= as_utc(since), calls.c.outcome.not_in(("cached", "refused"))
        )
        if until is not None:
            query = query.where(calls.c.ts < as_utc(until))
        query = scope_filter(query, scope_key, scope_value)
        with self._read(f"sum spend of {scope_key}={scope_value}") as conn:
            return float(conn.scalar(query) or 0.0)

    # budgets ---------------------------------------------------------------------------------------------

    def set_budget(self, budget: Budget) -> Budget:
        """Create or replace the budget of a scope and period."""
        values = {
            "scope_key": budget.scope_key, "scope_value": budget.scope_value, "period": budget.period,
            "timezone": budget.timezone, "limit_usd": budget.limit_usd, "soft_pct": budget.soft_pct,
            "hard": budget.hard, "created_at": budget.created_at,
        }
        statement = self._dialect_insert(budgets).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["scope_key", "scope_value", "period"],
            set_={k: statement.excluded[k] for k in ("timezone", "limit_usd", "soft_pct", "hard")},
        )
        with self._write(f"set budget {budget.name}") as conn:
            conn.execute(statement)
        return budget

    def budgets(self) -> list[Budget]:
        query = sa.select(budgets).order_by(budgets.c.scope_key, budgets.c.scope_value, budgets.c.period)
        with self._read("read budgets") as conn:
            return [_budget_from_row(row) for row in conn.execute(query)]

    def get_budget(self, scope_key: str, scope_value: str, period: str) -> Budget | None:
        query = sa.select(budgets).where(
            budgets.c.scope_key == scope_key, budgets.c.scope_value == scope_value, budgets.c.period == period
        )
        with self._read("read a budget") as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else _budget_from_row(row)

    def delete_budget(self, scope_key: str, scope_value: str, period: str) -> bool:
        statement = budgets.delete().where(
            budgets.c.scope_key == scope_key, budgets.c.scope_value == scope_value, budgets.c.period == period
        )
        with self._write("delete a budget") as conn:
            return conn.execute(statement).rowcount > 0

    # alerts ----------------------------------------------------------------------------------------------

    def add_alert(self, alert: Alert) -> Alert:
        with self._write(f"store alert {alert.rule}") as conn:
            conn.execute(alerts.insert().values(
                id=alert.id, ts=alert.ts, rule=alert.rule, severity=alert.severity, subject=alert.subject,
                message=alert.message, data=dict(alert.data), delivered=dict(alert.delivered),
            ))
        return alert

    def set_delivered(self, alert_id: str, delivered: Mapping[str, Any]) -> None:
        with self._write("record alert delivery") as conn:
            conn.execute(alerts.update().where(alerts.c.id == alert_id).values(delivered=dict(delivered)))

    def alerts(
        self, since: datetime | None = None, *, rule: str | None = None, limit: int = 1000
    ) -> list[Alert]:
        """Stored alerts, newest first."""
        query = sa.select(alerts).order_by(alerts.c.ts.desc(), alerts.c.id).limit(limit)
        if since is not None:
            query = query.where(alerts.c.ts >= as_utc(since))
        if rule is not None:
            query = query.where(alerts.c.rule == rule)
        with self._read("read alerts") as conn:
            return [_alert_from_row(row) for row in conn.execute(query)]

    def last_alert_at(self, rule: str, subject: str) -> datetime | None:
        """When this rule last fired for this subject (for deduplication across processes)."""
        query = sa.select(sa.func.max(alerts.c.ts)).where(alerts.c.rule == rule, alerts.c.subject == subject)
        with self._read("read alerts") as conn:
            value: datetime | None = conn.scalar(query)  # max() keeps the column type: an aware UTC datetime
        return value
