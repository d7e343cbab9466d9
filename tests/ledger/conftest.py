"""Every ledger test that takes ``ledger_url`` or ``store`` runs twice: on a SQLite file and on a fresh
PostgreSQL database (``make_database`` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from contentmill.ledger import LedgerStore


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, make_database: Callable[[str, str], str]) -> str:
    """An empty ledger database of either kind."""
    return make_database(request.param, "ledger")


@pytest.fixture
def store(ledger_url: str) -> Iterator[LedgerStore]:
    opened = LedgerStore(ledger_url)
    yield opened
    opened.close()
