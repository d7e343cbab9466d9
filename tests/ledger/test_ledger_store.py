"""The store on SQLite and PostgreSQL: migrations, calls, budgets, spend and alerts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from ledger_helpers import T0, call

from contentmill.errors import LedgerError
from contentmill.ledger import Alert, Budget, LedgerStore
from contentmill.ledger.migrations import MIGRATIONS, Migration, current_version, migrate
from contentmill.ledger.schema import metadata
from contentmill.ledger.store import call_row, create_ledger_engine, settings_url
from contentmill.ledger.store import ledger_url as parse_url
from contentmill.metering import Usage
from contentmill.settings import load_settings

OPENER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    go = Path(sys.argv[2])
    while not go.exists():
        time.sleep(0.005)
    from contentmill.ledger import LedgerStore
    store = LedgerStore(sys.argv[1])
    print(store.applied_migrations)
    store.close()
""")


def versions(url: str) -> list[int]:
    engine = create_ledger_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(sa.text("SELECT version FROM schema_version ORDER BY version")))
    finally:
        engine.dispose()


def test_opening_twice_migrates_once(ledger_url: str) -> None:
    first = LedgerStore(ledger_url)
    second = LedgerStore(ledger_url)
    assert first.applied_migrations == [m.version for m in MIGRATIONS] and second.applied_migrations == []
    assert versions(ledger_url) == [m.version for m in MIGRATIONS]
    first.close()
    second.close()


def test_four_processes_opening_a_new_ledger_at_once_migrate_it_once(ledger_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, ledger_url, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    go.touch()
    results = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], [err for _, err in results]
    applied = sorted(out.strip() for out, _ in results)
    assert applied == [str([m.version for m in MIGRATIONS]), "[]", "[]", "[]"]
    assert versions(ledger_url) == [m.version for m in MIGRATIONS]


def test_the_migrated_database_matches_the_schema_module(store: LedgerStore) -> None:
    inspector = sa.inspect(store.engine)
    assert set(inspector.get_table_names()) == set(metadata.tables)
    for table in metadata.sorted_tables:
        columns = {c["name"]: c["nullable"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name: c.nullable for c in table.columns}, table.name
        indexes = {i["name"]: list(i["column_names"]) for i in inspector.get_indexes(table.name)}
        assert indexes == {i.name: [c.name for c in i.columns] for i in table.indexes}, table.name


def test_a_ledger_of_version_4_loses_its_unused_reservations_table(ledger_url: str) -> None:
    engine = create_ledger_engine(ledger_url)
    try:
        assert migrate(engine, MIGRATIONS[:4]) == [1, 2, 3, 4]
        assert "reservations" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    store = LedgerStore(ledger_url)
    try:
        store.write_calls([call()])
        assert store.applied_migrations == [5, 6] and store.count_calls() == 1
        assert "reservations" not in sa.inspect(store.engine).get_table_names()
    finally:
        store.close()


def test_calls_written_before_version_6_read_back_as_having_waited_nothing(ledger_url: str) -> None:
    engine = create_ledger_engine(ledger_url)
    try:
        assert migrate(engine, MIGRATIONS[:5]) == [1, 2, 3, 4, 5]
        older = sa.Table("calls", sa.MetaData(), autoload_with=engine)
        assert "admission_wait_s" not in older.c
        with engine.begin() as conn:
            conn.execute(older.insert(), [{k: v for k, v in call_row(call(latency_s=1.5)).items() if k in older.c}])
    finally:
        engine.dispose()
    store = LedgerStore(ledger_url)
    try:
        store.write_calls([call(latency_s=0.2, admission_wait_s=3.0, ts=T0 + timedelta(seconds=1))])
        assert store.applied_migrations == [6]
        assert [(r.latency_s, r.admission_wait_s) for r in store.calls()] == [(1.5, 0.0), (0.2, 3.0)]
    finally:
        store.close()


def test_a_new_step_is_applied_once_and_in_order(ledger_url: str) -> None:
    LedgerStore(ledger_url).close()

    def add_note(conn: sa.Connection) -> None:
        conn.execute(sa.text("ALTER TABLE alerts ADD COLUMN note VARCHAR(40)"))

    nxt = len(MIGRATIONS) + 1
    steps = (*MIGRATIONS, Migration(nxt, "alert notes", add_note))
    engine = create_ledger_engine(ledger_url)
    try:
        assert migrate(engine, steps) == [nxt]
        assert migrate(engine, steps) == []
        assert current_version(engine) == nxt
        assert "note" in {c["name"] for c in sa.inspect(engine).get_columns("alerts")}
        with pytest.raises(LedgerError, match="newer than this contentmill"):
            migrate(engine, MIGRATIONS)
        with pytest.raises(LedgerError, match="without gaps"):
            migrate(engine, (*MIGRATIONS, Migration(nxt + 1, "gap", add_note)))
    finally:
        engine.dispose()


def test_calls_round_trip_and_a_retried_batch_is_written_once(store: LedgerStore) -> None:
    records = [
        call(),
        call(
            model="openai:tts-1",
            api_type="speech",
            usage=Usage(characters=1200, seconds=61.5),
            estimate=Usage(characters=1200, estimated=True),
            cost_usd=0.018,
            tags={"team": "video"},
        ),
        call(outcome="error", usage=None, cost_usd=0.0, error_type="ProviderTimeout", retries=2, tags={}),
        call(outcome="cached", cost_usd=0.0, saved_usd=0.001, cache_status="hit:redis", request_hash="ab12"),
    ]
    assert store.write_calls(records) == 4
    store.write_calls(records[:2])  # a batch retried after its commit was not acknowledged
    assert store.count_calls() == 4
    assert sorted(store.calls(), key=lambda r: r.id) == sorted(records, key=lambda r: r.id)


def test_spent_sums_charged_calls_of_a_scope_in_a_half_open_window(store: LedgerStore) -> None:
    store.write_calls(
        [
            call(cost_usd=1.0, ts=T0),
            call(cost_usd=2.0, ts=T0 + timedelta(hours=1), tags={"team": "ads", "project": "autumn"}),
            call(
                cost_usd=4.0,
                ts=T0 + timedelta(hours=2),
                tags={"team": "video"},
                model="openai:tts-1",
                api_type="speech",
            ),
            call(cost_usd=0.0, saved_usd=8.0, outcome="cached", ts=T0),
            call(cost_usd=16.0, ts=T0 + timedelta(hours=3)),  # at `until`: outside
        ]
    )
    until = T0 + timedelta(hours=3)
    assert store.spent("team", "ads", T0, until) == pytest.approx(3.0)
    assert store.spent("project", "autumn", T0, until) == pytest.approx(2.0)
    assert store.spent("api_type", "speech", T0, until) == pytest.approx(4.0)
    assert store.spent("model", "openai:gpt-4o-mini", T0, until) == pytest.approx(3.0)
    assert store.spent("provider", "openai", T0, until) == pytest.approx(7.0)
    assert store.spent("all", "*", T0, until) == pytest.approx(7.0)
    assert store.spent("all", "*", T0 + timedelta(minutes=30)) == pytest.approx(22.0)
    assert store.spent("team", "nobody", T0, until) == 0.0


def test_budgets_are_created_replaced_listed_and_deleted(store: LedgerStore) -> None:
    ads = Budget("team", "ads", "day", 10.0, timezone="Europe/Paris", soft_pct=75.0, created_at=T0)
    speech = Budget("api_type", "speech", "month", 500.0, hard=False, created_at=T0)
    store.set_budget(ads)
    store.set_budget(speech)
    assert store.budgets() == [speech, ads]
    raised = Budget("team", "ads", "day", 12.5, timezone="Europe/Paris", soft_pct=90.0, created_at=T0)
    store.set_budget(raised)
    assert store.get_budget("team", "ads", "day") == raised
    assert store.delete_budget("team", "ads", "day") is True
    assert store.delete_budget("team", "ads", "day") is False
    assert store.budgets() == [speech] and store.get_budget("team", "ads", "day") is None


def test_alerts_are_stored_listed_newest_first_and_delivery_recorded(store: LedgerStore) -> None:
    older = Alert("budget_used", "warning", "team=ads/day", "80% used", data={"pct": 80.0}, ts=T0)
    newer = Alert("anomaly", "critical", "team=ads@x", "spike", ts=T0 + timedelta(hours=1))
    store.add_alert(older)
    store.add_alert(newer)
    store.set_delivered(older.id, {"log": True, "webhook": False})
    listed = store.alerts()
    assert [a.id for a in listed] == [newer.id, older.id]
    assert listed[1].delivered == {"log": True, "webhook": False} and listed[1].data == {"pct": 80.0}
    assert [a.id for a in store.alerts(T0 + timedelta(minutes=1))] == [newer.id]
    assert [a.id for a in store.alerts(rule="budget_used")] == [older.id]
    assert store.last_alert_at("anomaly", "team=ads@x") == T0 + timedelta(hours=1)
    assert store.last_alert_at("anomaly", "other") is None


def test_urls_settings_and_their_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert parse_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    with pytest.raises(LedgerError, match="SQLite or PostgreSQL"):
        parse_url("mysql://u@h/db")
    with pytest.raises(LedgerError, match="must be a file"):
        parse_url("sqlite://")
    with pytest.raises(LedgerError, match="cannot be read"):
        parse_url("not a url")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONTENTMILL_DATABASE_URL", raising=False)
    embedded = load_settings(data_dir=tmp_path / "data")
    assert settings_url(embedded) == f"sqlite:///{tmp_path / 'data' / 'ledger.sqlite3'}"
    assert settings_url(load_settings(database_url="postgresql://h/cm")) == "postgresql://h/cm"


def test_an_unreachable_database_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(LedgerError) as caught:
        LedgerStore("postgresql://cm:s3cr3t-pw@127.0.0.1:1/ledger")
    assert "127.0.0.1" in str(caught.value) and "s3cr3t-pw" not in str(caught.value)
