"""The batched writer: everything put is written, through a real database outage (by way of the spool), and at
close or exit."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from ledger_helpers import ADMIN_URL, T0, call, wait_until

from contentmill.errors import CostNotRecorded, LedgerError
from contentmill.ledger import LedgerSpool, LedgerStore, LedgerWriter


@contextmanager
def outage(url: str) -> Iterator[None]:
    """Make writes fail for real: SQLite's write lock held elsewhere, or PostgreSQL refusing connections."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        holder = sqlite3.connect(parsed.database, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = parsed.database
    with admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        conn.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
            {"name": name},
        )
    try:
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


@pytest.fixture
def impatient_store(ledger_url: str) -> Iterator[LedgerStore]:
    """A store that gives up on a locked SQLite file after 0.1 s instead of 30 s."""
    url = ledger_url + "?timeout=0.1" if ledger_url.startswith("sqlite") else ledger_url
    opened = LedgerStore(url)
    yield opened
    opened.close()


def test_a_full_batch_is_written_without_waiting_and_close_writes_the_rest(store: LedgerStore) -> None:
    records = [call(ts=T0, tags={"team": f"t{i % 7}"}) for i in range(1050)]
    writer = LedgerWriter(store, batch_size=100, interval_s=3600)  # only a full batch or close() writes
    for record in records:
        writer.put(record)
    wait_until(lambda: writer.written >= 100, "the first full batch")
    assert writer.close() == 0
    assert writer.written == 1050 and writer.pending() == []
    assert {r.id for r in store.calls()} == {r.id for r in records}
    with pytest.raises(LedgerError, match="closed"):
        writer.put(call())


def test_a_partial_batch_is_written_after_the_interval(store: LedgerStore) -> None:
    with LedgerWriter(store, batch_size=500, interval_s=0.05) as writer:
        for _ in range(3):
            writer.put(call())
        wait_until(lambda: store.count_calls() == 3, "the interval flush")
    assert writer.written == 3


def test_a_batch_refused_in_a_real_outage_goes_to_the_spool_and_in_after_the_next_write(
    impatient_store: LedgerStore, ledger_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="contentmill.ledger")
    spool = LedgerSpool(tmp_path / "ledger.spool")
    before = [call(tags={"team": "before"}) for _ in range(10)]
    during = [call(tags={"team": "during"}) for _ in range(20)]
    after = call(tags={"team": "after"})
    with LedgerWriter(impatient_store, spool=spool, interval_s=0.05, max_backoff_s=0.2) as writer:
        for record in before:
            writer.put(record)
        wait_until(lambda: writer.written == 10, "the first records")
        with outage(ledger_url):
            for record in during:
                writer.put(record)
            wait_until(lambda: writer.spooled == 20, "the refused records in the spool")
            assert writer.written == 10 and writer.pending() == [] and spool.waiting() == 20
        writer.put(after)
        wait_until(lambda: writer.drained == 20, "the spool drained after the next write")
    assert writer.written == 11 and spool.waiting() == 0
    stored = impatient_store.calls()
    assert sorted(r.id for r in stored) == sorted(r.id for r in [*before, *during, after])
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "kept in the spool" in r.getMessage()]
    assert said[0][0] == "ERROR" and "20 call records kept in the spool" in said[0][1]


def test_close_during_an_outage_keeps_what_it_could_not_write_in_the_spool(
    impatient_store: LedgerStore, ledger_url: str, tmp_path: Path
) -> None:
    records = [call() for _ in range(5)]
    spool = LedgerSpool(tmp_path / "ledger.spool")
    writer = LedgerWriter(impatient_store, spool=spool, interval_s=3600)
    with outage(ledger_url):
        for record in records:
            writer.put(record)
        assert writer.close(timeout_s=0.3) == 0
    assert writer.pending() == [] and spool.waiting() == 5
    assert spool.drain(impatient_store) == 5 and impatient_store.count_calls() == 5 and spool.waiting() == 0


def test_close_raises_when_neither_the_ledger_nor_the_spool_keeps_a_record(
    impatient_store: LedgerStore, ledger_url: str, tmp_path: Path
) -> None:
    blocked = tmp_path / "ledger.spool"
    blocked.mkdir()  # a folder where the spool's file would be: every append fails, as on a full or read-only disk
    records = [call() for _ in range(2)]
    writer = LedgerWriter(impatient_store, spool=LedgerSpool(blocked), interval_s=3600)
    with outage(ledger_url):
        for record in records:
            writer.put(record)
        with pytest.raises(CostNotRecorded, match=r"the cost of 2 calls could not be recorded: .*nor kept: spool"):
            writer.close(timeout_s=0.3)
    assert [r.id for r in writer.pending()] == [r.id for r in records]
    assert writer.flush() == 2 and impatient_store.count_calls() == 2


EXITING = textwrap.dedent("""
    import sys
    from datetime import UTC, datetime
    from contentmill.ledger import CallRecord, LedgerStore, LedgerWriter
    from contentmill.metering import Usage
    writer = LedgerWriter(LedgerStore(sys.argv[1]), interval_s=3600)
    for i in range(250):
        writer.put(CallRecord(model="openai:gpt-4o-mini", api_type="text", outcome="ok",
                              estimate=Usage(10, 10), usage=Usage(10, 5), cost_usd=0.5, tags={"job": "exit"}))
    # no close(): the interpreter's exit must write them
""")


def test_records_put_just_before_the_process_exits_are_written(store: LedgerStore, ledger_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", EXITING, ledger_url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert store.count_calls() == 250
    assert store.spent("job", "exit", T0) == pytest.approx(125.0)
