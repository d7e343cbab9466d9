"""What the ledger and the knowledge graph stores share: one database on SQLAlchemy 2.x, a SQLite file
embedded or PostgreSQL with the services profile, its tables migrated in order when a store opens, and
database errors turned into the store's own errors.

SQLite runs in WAL mode and writes take the write lock at BEGIN (``BEGIN IMMEDIATE``), so two processes
queue on the busy timeout instead of failing when a read turns into a write. Each migration step runs once,
in one transaction with its version row, under a lock that makes concurrent openers wait:
``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite. Steps are frozen as released; a
change to a store's ``schema.py`` needs a new step.
"""

from __future__ import annotations

import operator
import random
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from contentmill.errors import ContentmillError

SQLITE_BUSY_TIMEOUT_S = 30.0
WRITE_LOCK = "write_lock"  # execution option: SQLite takes the write lock at BEGIN
WRITE = {WRITE_LOCK: True}
TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError, sa.exc.TimeoutError)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


@dataclass(frozen=True, slots=True)
class StoreKind:
    """How one store names itself in errors, and the errors it raises."""

    name: str  # "ledger", "graph store"
    file: str  # the SQLite file name shown in examples
    error: type[ContentmillError]
    unavailable: type[ContentmillError]


def database_url(url: str | sa.URL, kind: StoreKind) -> sa.URL:
    """A SQLAlchemy URL for ``url``: plain ``postgresql://`` uses psycopg 3; SQLite must be a file."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise kind.error(
            f"the {kind.name} database URL cannot be read; use sqlite:///path/{kind.file} or postgresql://host/db"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise kind.error(f"the {kind.name} runs on SQLite or PostgreSQL, not {backend}")
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise kind.error(f"the SQLite {kind.name} must be a file (sqlite:///path/{kind.file}), not in memory")
    return parsed


def enter_wal(cursor: Any, timeout_s: float) -> None:
    """Switch a new database file to WAL, waiting out other openers doing the same.

    Changing the journal mode needs an exclusive lock, and SQLite returns "database is locked" at once, without
    its busy handler, when two connections holding shared locks both ask for it. Once the file is in WAL mode the
    pragma is a no-op that takes no lock.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.2)


def _configure_sqlite(engine: Engine, timeout_s: float) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (see _on_begin)
        cursor = dbapi_connection.cursor()
        enter_wal(cursor, timeout_s)
        for pragma in ("synchronous=FULL", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE_LOCK, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _json_text(value: Any) -> str:
    """JSON columns through orjson: several times faster than the standard library on the float-heavy rows
    (routing decisions record every candidate's scores) that are written on every call."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def create_engine(url: str | sa.URL, kind: StoreKind) -> Engine:
    """An engine for the store's database: SQLite in WAL with a busy timeout, or a pre-pinged PostgreSQL pool."""
    parsed = database_url(url, kind)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        timeout_s = float(str(parsed.query.get("timeout", SQLITE_BUSY_TIMEOUT_S)))
        engine = sa.create_engine(parsed, connect_args={"timeout": timeout_s}, json_serializer=_json_text)
        _configure_sqlite(engine, timeout_s)
        return engine
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": 10}
    # pre_ping replaces connections the server closed (restart, idle timeout) before they are used.
    return sa.create_engine(
        parsed, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=connect_args,
        json_serializer=_json_text,
    )


def migrate(engine: Engine, steps: Sequence[Migration], *, version_table: sa.Table, lock_key: int,
            kind: StoreKind) -> list[int]:
    """Bring the database up to the last step; returns the versions applied now (empty when up to date)."""
    versions = [step.version for step in steps]
    if versions != list(range(1, len(steps) + 1)):
        raise kind.error(f"{kind.name} migration versions must run 1, 2, 3, ... without gaps (got {versions})")
    applied: list[int] = []
    with engine.connect() as conn, conn.execution_options(**WRITE).begin():
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
        version_table.create(conn, checkfirst=True)
        current = conn.scalar(sa.select(sa.func.max(version_table.c.version))) or 0
        if current > len(steps):
            raise kind.error(
                f"the {kind.name} database is at schema version {current}, newer than this contentmill knows "
                f"({len(steps)}): upgrade contentmill"
            )
        for step in steps[current:]:
            step.apply(conn)
            conn.execute(version_table.insert().values(
                version=step.version, description=step.description, applied_at=datetime.now(UTC)
            ))
            applied.append(step.version)
    return applied


def current_version(engine: Engine, version_table: sa.Table) -> int:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(version_table.name):
            return 0
        return conn.scalar(sa.select(sa.func.max(version_table.c.version))) or 0


class SQLStore(ABC):
    """A store on one database: opened and migrated from a URL, closed once, errors as the store's own."""

    kind: ClassVar[StoreKind]

    def __init__(self, url: str | sa.URL) -> None:
        self.engine = create_engine(url, self.kind)
        self._bulk_inserts: dict[str, BulkInsert] = {}
        self.url = self.engine.url.render_as_string(hide_password=True)
        try:
            with self._errors(f"open the {self.kind.name} (create or migrate its tables)"):
                self.applied_migrations = self.migrate()
        except self.kind.error:
            self.engine.dispose()  # no pooled connection outlives a store that failed to open
            raise

    @abstractmethod
    def migrate(self) -> list[int]:
        """Apply the store's migration steps; returns the versions applied now."""

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Database errors as the store's error naming the database (password hidden) and what failed."""
        try:
            yield
        except self.kind.error:
            raise
        except sa.exc.SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            detail = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            error = self.kind.unavailable if isinstance(exc, TRANSIENT) else self.kind.error
            raise error(f"{self.kind.name} {self.url}: could not {action}: {type(cause).__name__}: {detail}") from exc

    @contextmanager
    def _write(self, action: str) -> Iterator[Connection]:
        """One committed write transaction (SQLite: holding the write lock from BEGIN)."""
        with self._errors(action), self.engine.connect() as conn:
            conn.execution_options(**WRITE)
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self, action: str) -> Iterator[Connection]:
        with self._errors(action), self.engine.connect() as conn:
            yield conn

    def _dialect_insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT, which has ``on_conflict_do_nothing`` and ``on_conflict_do_update``."""
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def _insert_new(self, table: sa.Table) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING on the primary key: a retried batch is written once."""
        keys = [column.name for column in table.primary_key]
        return self._dialect_insert(table).on_conflict_do_nothing(index_elements=keys)

    def _bulk(self, table: sa.Table) -> BulkInsert:
        """``_insert_new(table)`` compiled once for this database, to insert many rows at a time."""
        bulk = self._bulk_inserts.get(table.name)
        if bulk is None:
            bulk = self._bulk_inserts[table.name] = BulkInsert(self._insert_new(table), table, self.engine.dialect)
        return bulk


class BulkInsert:
    """Many rows of one table in one driver ``executemany``: the statement compiled once for the dialect, and
    each value passed through its column type's bind processor, the one SQLAlchemy would apply, so the stored
    row is the same. SQLAlchemy's own executemany builds and processes every row's parameters in Python at
    some 25 µs a row; a writer thread doing that holds the GIL the serving thread's requests wait for."""

    def __init__(self, statement: Any, table: sa.Table, dialect: sa.Dialect) -> None:
        names = [column.name for column in table.columns]
        compiled = statement.compile(dialect=dialect, column_keys=names)
        self.sql = compiled.string
        self._positional = compiled.positional
        order = list(compiled.positiontup or names) if compiled.positional else names
        self._order = order
        # a row's values in the statement's order, read in C (itemgetter of one name gives no tuple)
        self._values = operator.itemgetter(*order) if len(order) > 1 else lambda row: (row[order[0]],)
        self._processed = [(i, process) for i, name in enumerate(order)
                           if (process := table.columns[name].type.dialect_impl(dialect).bind_processor(dialect))]

    def execute(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` (each a value for every column, by column name) in the transaction of ``conn``."""
        if not rows:
            return
        params: list[Any] = []
        for row in rows:
            values = list(self._values(row))
            for i, process in self._processed:
                values[i] = process(values[i])
            params.append(tuple(values) if self._positional else dict(zip(self._order, values, strict=True)))
        conn.exec_driver_sql(self.sql, params)
