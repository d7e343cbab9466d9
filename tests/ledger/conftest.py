"""Every ledger test that takes ``ledger_url`` or ``store`` runs twice: on a SQLite file and on a fresh
PostgreSQL database (created for the test and dropped after it) on the server at 127.0.0.1:5432, or the
one CONTENTMILL_TEST_POSTGRES_URL names. Without that server the PostgreSQL half is skipped, except in
CI (CI=true), where it fails."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from ledger_helpers import ADMIN_URL

from contentmill.ledger import LedgerStore


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[sa.Engine | None]:
    """An AUTOCOMMIT engine on the server's maintenance database, or None when there is no server."""
    engine = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable at {ADMIN_URL} in CI: {type(exc.orig).__name__}")
        yield None
        return
    yield engine
    engine.dispose()


def create_database(admin: sa.Engine) -> str:
    name = f"cm_ledger_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return name


def drop_database(admin: sa.Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def database_url(name: str) -> str:
    return sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path, pg_admin: sa.Engine | None) -> Iterator[str]:
    """An empty ledger database of either kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        return
    if pg_admin is None:
        pytest.skip(f"PostgreSQL is not reachable at {ADMIN_URL}; set CONTENTMILL_TEST_POSTGRES_URL")
    name = create_database(pg_admin)
    try:
        yield database_url(name)
    finally:
        drop_database(pg_admin, name)


@pytest.fixture
def store(ledger_url: str) -> Iterator[LedgerStore]:
    opened = LedgerStore(ledger_url)
    yield opened
    opened.close()
