"""The dashboard's page load over a ledger of 100k calls, against the same spend aggregation run as a bare SQL query.

A ledger (SQLite in a temporary data dir, or ``--database-url`` for PostgreSQL, whose tables are emptied first) is
filled with ROWS calls over 30 days, written in time order as the gateway writes them, by 8 teams, 24 projects,
6 models and 4 cache outcomes, with 5 budgets, 40 alerts and 2,000 routing decisions; ``contentmill serve`` then
answers ``GET /`` with the admin key. Rounds alternate: each page (three windows and groupings) is fetched over HTTP,
and its spend aggregation (the report's GROUP BY of tag x cache status x bucket, the page's largest query) is run
bare through the database driver (sqlite3 / psycopg, no SQLAlchemy). Figures (one JSON line each): p50/p90 of the
page and of the bare query, their ratio, the page's bytes, and the same query through ``contentmill.ledger.report``
(the page's code path without HTTP and rendering).
Usage: ``python bench/dashboard.py [--rows 100000] [--rounds 15] [--database-url URL]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from contentmill.ledger import Alert, Budget, CallRecord, LedgerStore, report
from contentmill.ledger.report import grouped_query
from contentmill.ledger.schema import metadata
from contentmill.metering import Usage
from contentmill.routing.store import write_decisions
from contentmill.testing.harness import start_gateway_server

ADMIN = "admin-bench-dashboard-0123456789"
TEAMS = [f"team{i}" for i in range(8)]
MODELS = ["openai:gpt-4o-mini", "openai:gpt-4o", "deepseek:deepseek-chat", "qwen:qwen-plus", "openai:tts-1",
          "openai:text-embedding-3-small"]
CACHE = ["miss", "miss", "off", "hit:l1", "hit:l2", "hit:l3"]
PAGES = [  # (query string, by, window, bucket)
    ("period=7d&by=team", "team", timedelta(days=7), "day"),
    ("period=30d&by=project", "project", timedelta(days=30), "day"),
    ("period=24h&by=model", "model", timedelta(hours=24), "hour"),
]


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "dashboard", **fields}), flush=True)


def seed(store: LedgerStore, rows: int, now: datetime) -> None:
    """Calls written in time order, as the gateway appends them."""
    rng = random.Random(13)
    moments = sorted(now - timedelta(seconds=rng.randint(1, 30 * 86400)) for _ in range(rows))
    batch: list[CallRecord] = []
    for i, ts in enumerate(moments):
        team = rng.choice(TEAMS)
        cached = rng.choice(CACHE)
        outcome = "cached" if cached.startswith("hit") else rng.choice(["ok"] * 30 + ["error", "refused"])
        tags = {"team": team, "project": f"{team}-p{rng.randrange(3)}", "user": f"u{rng.randrange(200)}",
                "vkey": f"vk{rng.randrange(40):016d}"}
        batch.append(CallRecord(
            model=rng.choice(MODELS), api_type="text", estimate=Usage(input_tokens=300, output_tokens=120),
            usage=Usage(input_tokens=rng.randint(50, 3000), output_tokens=rng.randint(20, 800)),
            cost_usd=0.0 if outcome in ("cached", "refused") else round(rng.uniform(0.0001, 0.02), 7),
            saved_usd=round(rng.uniform(0.0001, 0.02), 7) if outcome == "cached" else 0.0, outcome=outcome,
            cache_status=cached, tags=tags, ts=ts))
        if len(batch) == 5000 or i == rows - 1:
            store.write_calls(batch)
            batch = []
    for team in TEAMS[:5]:
        store.set_budget(Budget("team", team, "month", 250.0))
    for i in range(40):
        store.add_alert(Alert(rule="budget_used", severity="warning", subject=f"team={TEAMS[i % 8]}/month",
                              message=f"{TEAMS[i % 8]} used 80% of its month budget",
                              ts=now - timedelta(hours=i * 7)))
    write_decisions(store, [{
        "id": f"rd{i:08d}", "ts": now - timedelta(minutes=rng.randint(1, 30 * 1440)), "request_hash": f"rd{i}",
        "task_kind": "chat", "chosen_model": rng.choice(MODELS[:4]), "tier": "cheap", "priority": "normal",
        "weights": {"quality": 0.5, "cost": 0.5}, "candidates": [], "reason": "cheapest of its tier",
        "downgraded_from": None} for i in range(2000)])


def bare_query(store: LedgerStore, url: str, by: str, since: datetime, until: datetime,
               bucket: str) -> Callable[[], int]:
    """The report's GROUP BY as SQL text run through the driver itself; returns how many rows it gave."""
    query, _ = grouped_query([by], since, until, bucket)
    compiled = query.compile(dialect=store.engine.dialect, compile_kwargs={"render_postcompile": True})
    sql = str(compiled)
    params = compiled.construct_params()
    if store.engine.dialect.name == "sqlite":
        path = url.removeprefix("sqlite:///")
        order = [params[name] for name in (compiled.positiontup or [])]
        values = [v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v
                  for v in order]
        connection = sqlite3.connect(path)

        def run_sqlite() -> int:
            return len(connection.execute(sql, values).fetchall())

        return run_sqlite
    import psycopg

    pg = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)

    def run_pg() -> int:
        with pg.cursor() as cursor:
            cursor.execute(sql, params)  # type: ignore[arg-type]
            return len(cursor.fetchall())

    return run_pg


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered), 2),
            "p90_ms": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--database-url", default=None, help="PostgreSQL to use instead of a SQLite file "
                                                             "(its ledger tables are emptied first)")
    options = parser.parse_args()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        url = options.database_url or f"sqlite:///{data / 'ledger.sqlite3'}"
        data.mkdir()
        store = LedgerStore(url)
        store.migrate()
        if options.database_url:
            with store.engine.begin() as conn:
                for table in reversed(metadata.sorted_tables):
                    if table.name != "schema_version":
                        conn.execute(sa.delete(table))
        started = time.perf_counter()
        seed(store, options.rows, now)
        emit(step="seed", rows=options.rows, engine=store.engine.dialect.name,
             seconds=round(time.perf_counter() - started, 1))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTMILL_")}
        env.update({"CONTENTMILL_DATA_DIR": str(data), "CONTENTMILL_ADMIN_KEY": ADMIN,
                    "CONTENTMILL_MONITOR_INTERVAL_S": "0", "CONTENTMILL_LOG_LEVEL": "WARNING"})
        if options.database_url:
            env["CONTENTMILL_DATABASE_URL"] = options.database_url
        server = start_gateway_server(env)
        try:
            with httpx.Client(base_url=server.root_url, timeout=60,
                              headers={"authorization": f"Bearer {ADMIN}", "accept": "text/html"}) as client:
                runs = []
                for path, by, span, bucket in PAGES:
                    bare = bare_query(store, url, by, now - span, now, bucket)
                    fetch = lambda p=path: client.get("/?" + p).raise_for_status()  # noqa: E731
                    through = lambda by=by, span=span, bucket=bucket: report(  # noqa: E731
                        store, by, now - span, now, bucket=bucket)
                    fetch(), bare(), through()  # warm: caches, the server's first-use work
                    runs.append((path, fetch, bare, through, {"page": [], "bare": [], "report": []}))
                for _ in range(options.rounds):
                    for _path, fetch, bare, through, samples in runs:
                        samples["page"].append(timed(fetch))
                        samples["bare"].append(timed(bare))
                        samples["report"].append(timed(through))
                for path, _fetch, bare, _through, samples in runs:
                    page, sql, via = stats(samples["page"]), stats(samples["bare"]), stats(samples["report"])
                    emit(page="/?" + path, rows=options.rows, engine=store.engine.dialect.name,
                         page_bytes=len(client.get("/?" + path).content), groups=bare(),
                         page_p50_ms=page["p50_ms"], page_p90_ms=page["p90_ms"], bare_sql_p50_ms=sql["p50_ms"],
                         bare_sql_p90_ms=sql["p90_ms"], report_p50_ms=via["p50_ms"],
                         page_over_bare_sql=round(page["p50_ms"] / sql["p50_ms"], 2),
                         report_over_bare_sql=round(via["p50_ms"] / sql["p50_ms"], 2))
        finally:
            server.stop()
            store.close()


if __name__ == "__main__":
    main()
