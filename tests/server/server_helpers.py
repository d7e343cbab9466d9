"""What the server tests share: the environment a server process runs under, keys, and the ledger's rows."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

from contentmill.ledger import CallRecord, LedgerStore
from contentmill.server.keys import IssuedKey, KeyStore

ADMIN_KEY = "admin-test-0123456789abcdef"
UPSTREAM_KEY = "sk-upstream-test-key-000000"


def server_env(upstream_url: str, data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a server process: this test's data dir, the fake upstream as OpenAI, the admin key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTMILL_")}
    env.update({
        "CONTENTMILL_DATA_DIR": str(data_dir), "OPENAI_BASE_URL": upstream_url, "OPENAI_API_KEY": UPSTREAM_KEY,
        "CONTENTMILL_ADMIN_KEY": ADMIN_KEY, "CONTENTMILL_MONITOR_INTERVAL_S": "0",
        "CONTENTMILL_LOG_LEVEL": "INFO", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    })
    env.update({f"CONTENTMILL_{k.upper()}": v for k, v in settings.items()})
    return env


def ledger(env: Mapping[str, str]) -> LedgerStore:
    url = env.get("CONTENTMILL_DATABASE_URL") or f"sqlite:///{Path(env['CONTENTMILL_DATA_DIR']) / 'ledger.sqlite3'}"
    store = LedgerStore(url)
    store.migrate()
    return store


def make_key(env: Mapping[str, str], team: str = "shop", **options: object) -> IssuedKey:
    store = ledger(env)
    try:
        return KeyStore(store).create(team, **options)  # type: ignore[arg-type]
    finally:
        store.close()


def calls(env: Mapping[str, str], at_least: int = 1, settle_s: float = 0.6, timeout_s: float = 20.0
          ) -> list[CallRecord]:
    """The ledger's rows once at least ``at_least`` are written (the server writes in batches, within half a
    second) and no more have come for ``settle_s``: a row written twice would show."""
    store = ledger(env)
    deadline = time.monotonic() + timeout_s
    try:
        rows = store.calls()
        while len(rows) < at_least and time.monotonic() < deadline:
            time.sleep(0.05)
            rows = store.calls()
        time.sleep(settle_s)
        return store.calls()
    finally:
        store.close()
