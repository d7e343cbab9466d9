"""Redis, the store of limits and budgets in the services profile, unreachable. With CONTENTMILL_ON_REDIS_DOWN=refuse
a call is refused in one line that names where Redis is (nothing is paid); with the default, local, calls go on
against this machine's share of each budget, with an alert. Cut mid-call, the answer already paid is returned and
recorded, and its settlement reaches Redis once it is back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from ledger.tcp_proxy import TcpProxy  # the tests' own TCP forwarder (tests/ledger/tcp_proxy.py)
from pydantic import SecretStr

from contentmill.errors import BudgetExceeded
from contentmill.gateway import Gateway
from contentmill.ledger import Budget, LedgerStore, settings_url
from contentmill.requests import TextRequest
from contentmill.settings import load_settings

KEY = "sk-test-redis-down-0123456789"
MODEL = "openai:gpt-4o-mini"
REDIS = ("127.0.0.1", 6379)


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"test:{uuid.uuid4().hex}:"
    yield name
    client = redis.Redis(*REDIS)
    keys = list(client.scan_iter(match=name + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_an_unreachable_redis_refuses_in_one_line_and_pays_nothing(
        upstream: Callable[..., Any], tmp_path: Path) -> None:
    server = upstream()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CONTENTMILL_")},
           "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY, "CONTENTMILL_DATA_DIR": str(tmp_path),
           "CONTENTMILL_REDIS_URL": "redis://:s3cret-pw@127.0.0.1:1/0", "CONTENTMILL_ON_REDIS_DOWN": "refuse"}
    done = subprocess.run([sys.executable, "-m", "contentmill.cli", "generate", "hi", "--model", MODEL,
                           "--max-tokens", "20", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "Redis at 127.0.0.1:1 cannot be reached" in done.stderr and "s3cret-pw" not in done.stderr
    assert server.stats()["requests"] == 0
    store = LedgerStore(settings_url(load_settings(data_dir=tmp_path)))
    try:
        [row] = store.calls()
    finally:
        store.close()
    assert row.outcome == "refused" and row.error_type == "AdmissionUnavailable" and row.cost_usd == 0


async def test_redis_cut_mid_call_returns_the_paid_answer_and_settles_it_later(
        upstream: Callable[..., Any], tmp_path: Path, prefix: str) -> None:
    server = upstream(latency_ms=1500)
    with TcpProxy(*REDIS) as proxy:
        settings = load_settings(data_dir=tmp_path, openai_base_url=server.base_url, openai_api_key=SecretStr(KEY),
                                 redis_url=f"redis://127.0.0.1:{proxy.port}/0", redis_prefix=prefix,
                                 cache_enabled=False, monitor_interval_s=0)
        async with Gateway(settings) as gateway:
            call = asyncio.ensure_future(gateway.generate(TextRequest.chat("Hello", max_tokens=20), model=MODEL,
                                                          tags={"team": "shop"}))
            client = redis.Redis(*REDIS)
            for _ in range(200):  # until the reservation is in Redis and the call is at the upstream
                if client.zcard(prefix + "adm:reservations"):
                    break
                await asyncio.sleep(0.02)
            proxy.cut()
            gen = await call  # paid: returned, not lost
            assert gen.text and gen.cost_usd > 0
            assert client.zcard(prefix + "adm:reservations") == 1  # its settlement waits
            proxy.restore()
            assert await gateway.sweep_orphans() == []  # the waiting settlement goes first: no orphan
            assert client.zcard(prefix + "adm:reservations") == 0
            client.close()
    store = LedgerStore(settings_url(settings))
    try:
        [row] = store.calls()
    finally:
        store.close()
    assert row.outcome == "ok" and row.cost_usd == pytest.approx(gen.cost_usd)
    assert server.stats()["requests"] == 1


async def test_without_redis_calls_go_on_within_this_machines_share_of_the_budget(
        upstream: Callable[..., Any], tmp_path: Path) -> None:
    server = upstream()
    limit = 0.0004
    settings = load_settings(data_dir=tmp_path, openai_base_url=server.base_url, openai_api_key=SecretStr(KEY),
                             redis_url="redis://127.0.0.1:1/0", cache_enabled=False, monitor_interval_s=0)
    store = LedgerStore(settings_url(settings))
    store.set_budget(Budget(scope_key="team", scope_value="shop", period="day", limit_usd=limit))
    store.close()
    answered = refused = 0
    async with Gateway(settings) as gateway:
        for i in range(40):
            try:
                await gateway.generate(TextRequest.chat(f"Tagline {i}", max_tokens=40), model=MODEL,
                                       tags={"team": "shop"})
                answered += 1
            except BudgetExceeded:
                refused += 1
                break
        gateway.alerts.drain()
    assert answered > 0 and refused == 1
    store = LedgerStore(settings_url(settings))
    try:
        spent = store.spent("team", "shop", datetime.now(UTC) - timedelta(days=1))
        alerts = store.alerts(datetime.now(UTC) - timedelta(hours=1), rule="redis_down")
    finally:
        store.close()
    assert 0 < spent <= limit * settings.redis_down_share  # this machine's share of what was left
    assert len(alerts) == 1 and "127.0.0.1:1" in alerts[0].message and alerts[0].severity == "critical"
    assert server.stats()["requests"] == answered
