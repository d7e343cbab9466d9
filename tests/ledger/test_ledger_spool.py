"""The ledger loses nothing: a call paid while its database is cut waits in the data directory's spool and is
written, once, at the next chance; a cost kept nowhere makes the command fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from ledger_helpers import ADMIN_URL, call, wait_until
from tcp_proxy import TcpProxy

from contentmill.ledger import LedgerSpool, LedgerStore
from contentmill.ledger.spool import spool_line
from contentmill.testing.harness import Upstream

KEY = "sk-test-ledger-spool-0123456789"
MODEL = "openai:gpt-4o-mini"


# -- the spool on its own --------------------------------------------------------------------------------------


def test_a_drain_writes_each_record_once_even_when_some_are_already_in_the_ledger(
    store: LedgerStore, tmp_path: Path
) -> None:
    spool = LedgerSpool(tmp_path / "ledger.spool")
    records = [call(tags={"team": f"t{i}"}) for i in range(7)]
    store.write_calls(records[:3])  # as if a drain had written them and stopped before emptying the spool
    spool.append(records)
    assert spool.waiting() == 7
    assert spool.drain(store) == 7
    assert spool.waiting() == 0 and spool.drain(store) == 0
    stored = store.calls()
    assert sorted(r.id for r in stored) == sorted(r.id for r in records)
    assert {r.id: r for r in stored} == {r.id: r for r in records}  # every field read back as it was spooled


def test_a_line_cut_short_by_a_crash_is_set_aside_and_the_rest_written(store: LedgerStore, tmp_path: Path) -> None:
    spool = LedgerSpool(tmp_path / "ledger.spool")
    whole = call()
    spool.append([whole])
    with spool.path.open("ab") as handle:
        handle.write(spool_line(call())[:40])  # a process died in the middle of its append
    assert spool.drain(store) == 1
    assert [r.id for r in store.calls()] == [whole.id]
    assert spool.waiting() == 0 and spool.rejected.read_bytes().count(b"\n") == 1


DRAIN = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from contentmill.ledger import LedgerSpool, LedgerStore
    store = LedgerStore(sys.argv[1])
    go = Path(sys.argv[3])
    while not go.exists():
        time.sleep(0.001)
    print(LedgerSpool(Path(sys.argv[2])).drain(store))
    store.close()
""")


def test_two_processes_draining_at_once_write_each_record_once(
    store: LedgerStore, ledger_url: str, tmp_path: Path
) -> None:
    spool = LedgerSpool(tmp_path / "ledger.spool")
    records = [call(tags={"team": f"t{i % 5}"}) for i in range(3000)]
    spool.append(records)
    go = tmp_path / "go"
    drainers = [
        subprocess.Popen([sys.executable, "-c", DRAIN, ledger_url, str(spool.path), str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    time.sleep(1.0)  # both have opened the ledger and wait for the same moment
    go.touch()
    drained = []
    for drainer in drainers:
        out, err = drainer.communicate(timeout=120)
        assert drainer.returncode == 0, err
        drained.append(int(out))
    assert sorted(drained) == [0, 3000]  # one took the lock and every line; the other found the spool empty
    assert store.count_calls() == 3000 and spool.waiting() == 0


# -- a real outage under the CLI -------------------------------------------------------------------------------


@pytest.fixture
def database(make_database: Callable[[str, str], str]) -> sa.URL:
    """A fresh PostgreSQL ledger, migrated."""
    url = sa.make_url(make_database("postgresql", "spool"))
    LedgerStore(url).close()
    return url


@pytest.fixture
def db(database: sa.URL) -> Iterator[TcpProxy]:
    """The line between the processes under test and the ledger's PostgreSQL, which a test can cut."""
    with TcpProxy(database.host or "127.0.0.1", database.port or 5432) as proxy:
        yield proxy


def through(proxy: TcpProxy, url: sa.URL) -> str:
    return url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def cli_env(database_url: str, base_url: str, data_dir: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("CONTENTMILL_")}
    return {**env, "CONTENTMILL_DATABASE_URL": database_url, "CONTENTMILL_DATA_DIR": str(data_dir),
            "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": KEY}


def generate_while_the_database_is_cut(
    server: Upstream, db: TcpProxy, database: sa.URL, data_dir: Path
) -> subprocess.CompletedProcess[str]:
    """``contentmill generate --json`` whose ledger connection is cut (and refused) while the vendor answers."""
    vendor = TcpProxy("127.0.0.1", int(server.root_url.rsplit(":", 1)[1]))  # shows when the call has begun
    try:
        env = cli_env(through(db, database), f"http://127.0.0.1:{vendor.port}/v1", data_dir)
        command = [sys.executable, "-m", "contentmill.cli", "generate", "hi", "--model", MODEL,
                   "--max-tokens", "20", "--json"]
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: vendor.accepted >= 1 or process.poll() is not None, "the call to the vendor")
            db.cut()
            out, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    finally:
        vendor.close()
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def report_json(env: dict[str, str]) -> tuple[dict[str, Any], str]:
    done = subprocess.run([sys.executable, "-m", "contentmill.cli", "report", "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data, done.stderr


def test_a_call_paid_while_the_ledger_is_cut_is_spooled_then_reported_once(
    upstream: Callable[..., Upstream], database: sa.URL, db: TcpProxy, tmp_path: Path
) -> None:
    server = upstream(latency_ms=1500)
    done = generate_while_the_database_is_cut(server, db, database, tmp_path)
    assert done.returncode == 0, done.stderr
    cost = json.loads(done.stdout)["cost_usd"]
    (line,) = done.stderr.splitlines()
    assert line.startswith("ERROR contentmill.ledger: ledger write failed: 1 call record kept in the spool")
    assert "could not write 1 call records: OperationalError" in line
    spool = LedgerSpool.in_data_dir(tmp_path)
    assert spool.waiting() == 1 and cost > 0
    with LedgerStore(database) as direct:
        assert direct.count_calls() == 0

    db.restore()
    data, stderr = report_json(cli_env(through(db, database), "http://127.0.0.1:9/v1", tmp_path))
    assert stderr == "" and data["spooled_rows"] == 0 and spool.waiting() == 0
    assert data["total"]["calls"] == server.stats()["requests"] == 1
    with LedgerStore(database) as direct:
        (row,) = direct.calls()
    assert row.model == MODEL and row.outcome == "ok" and row.cost_usd == pytest.approx(cost)


def test_a_cost_kept_nowhere_fails_the_command_in_one_line(
    upstream: Callable[..., Upstream], database: sa.URL, db: TcpProxy, tmp_path: Path
) -> None:
    (tmp_path / "ledger.spool").mkdir()  # the spool cannot be written, as on a full or read-only disk
    server = upstream(latency_ms=1500)
    done = generate_while_the_database_is_cut(server, db, database, tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("contentmill: the cost of 1 call could not be recorded: ledger ")
    assert "nor kept: spool " in line and "IsADirectoryError" in line
    assert server.stats()["requests"] == 1


def test_report_says_how_many_records_wait_when_the_ledger_refuses_them(
    database: sa.URL, tmp_path: Path
) -> None:
    spool = LedgerSpool.in_data_dir(tmp_path)
    spool.append([call(ts=datetime.now(UTC)) for _ in range(3)])
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:  # a database that reads but refuses writes, as a standby after failover
            conn.execute(sa.text(f'ALTER DATABASE "{database.database}" SET default_transaction_read_only = on'))
        env = cli_env(database.render_as_string(hide_password=False), "http://127.0.0.1:9/v1", tmp_path)
        data, stderr = report_json(env)
        assert data["spooled_rows"] == 3 and data["total"]["calls"] == 0
        assert len(stderr.splitlines()) == 1, stderr
        (line,) = stderr.splitlines()
        assert line.startswith("contentmill: call records still wait in the spool: ") and "read-only" in line
        table = subprocess.run([sys.executable, "-m", "contentmill.cli", "report"], env=env, capture_output=True,
                               text=True, timeout=120)
        assert table.returncode == 0 and "3 call records wait in the spool" in table.stdout
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{database.database}" RESET default_transaction_read_only'))
        data, stderr = report_json(env)
    finally:
        admin.dispose()
    assert stderr == "" and data["spooled_rows"] == 0 and data["total"]["calls"] == 3
    with LedgerStore(database) as direct:
        assert direct.count_calls() == 3
