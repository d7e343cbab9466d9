"""Several server processes, one set of limits: replicas sharing Redis (admission, cache) and PostgreSQL (keys,
ledger) hold a key's budget together under 64 concurrent clients, streaming and not; every upstream request has
exactly one ledger row; a revoked key is refused everywhere within a second; the key's secret is nowhere."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
import redis
import sqlalchemy as sa
from server_helpers import ADMIN_KEY, UPSTREAM_KEY, calls, make_key, server_env

from contentmill.testing.harness import Served, Upstream

REDIS_URL = "redis://127.0.0.1:6379/0"
BUDGET_USD = 0.0006
CLIENTS = 64


@pytest.fixture
def shared_env(upstream: Callable[..., Upstream], make_database: Callable[[str, str], str], redis_prefix: str,
               tmp_path: Path) -> tuple[dict[str, str], Upstream]:
    up = upstream(api_key=[UPSTREAM_KEY], latency_ms=30, rpm=1_000_000, tpm=1_000_000_000)
    env = server_env(up.base_url, tmp_path / "data", redis_url=REDIS_URL, redis_prefix=redis_prefix,
                     database_url=make_database("postgresql", "serve"), profile="services")
    return env, up


async def _spend(servers: list[Served], secret: str) -> tuple[int, int, int]:
    """64 clients, alternating replicas, half streaming, each asking until its budget refusal: (answered,
    refused, other failures)."""
    counts = {"answered": 0, "refused": 0, "other": 0}

    async def client(index: int) -> None:
        server = servers[index % len(servers)]
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key=secret, max_retries=0) as sdk:
            for turn in range(50):
                messages = [{"role": "user", "content": f"Describe product {index}-{turn} in one line."}]
                try:
                    if index % 2:
                        stream = await sdk.chat.completions.create(model="gpt-4o-mini", max_tokens=30, stream=True,
                                                                   messages=messages)  # type: ignore[arg-type]
                        async for _ in stream:
                            pass
                    else:
                        await sdk.chat.completions.create(model="gpt-4o-mini", max_tokens=30,
                                                          messages=messages)  # type: ignore[arg-type]
                    counts["answered"] += 1
                except openai.RateLimitError as exc:
                    assert exc.code == "budget_exceeded", exc
                    counts["refused"] += 1
                    return
                except openai.APIError:
                    counts["other"] += 1
                    return

    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    return counts["answered"], counts["refused"], counts["other"]


def test_replicas_hold_one_keys_budget_together_and_write_one_row_per_upstream_request(
        serve: Callable[..., Served], shared_env: tuple[dict[str, str], Upstream]) -> None:
    env, up = shared_env
    servers = [serve(env), serve(env)]
    issued = make_key(env, budget_usd=BUDGET_USD, period="day")
    answered, refused, other = asyncio.run(_spend(servers, issued.secret))
    assert other == 0 and refused == CLIENTS and answered > 10
    rows = calls(env, at_least=answered + refused)
    charged = [r for r in rows if r.outcome in ("ok", "error")]
    spent = sum(r.cost_usd for r in charged)
    assert spent <= BUDGET_USD  # never passed, across both replicas at once
    assert spent >= BUDGET_USD * 0.5  # and not refused far too early either
    assert len(charged) == up.stats()["requests"] == answered  # one row per upstream request
    assert len([r for r in rows if r.outcome == "refused"]) == refused
    assert {r.tags["vkey"] for r in rows} == {issued.key.id}

    # The secret is in no table, no Redis value, no log line.
    engine = sa.create_engine(env["CONTENTMILL_DATABASE_URL"])
    with engine.connect() as conn:
        tables = conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()
        for table in list(tables):
            dump = conn.execute(sa.text(f'SELECT * FROM "{table}"')).all()
            assert issued.secret not in repr(dump), table
            assert issued.secret[3:20] not in repr(dump), table
    engine.dispose()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for name in client.scan_iter(match=env["CONTENTMILL_REDIS_PREFIX"] + "*"):
            kind = client.type(name)
            value = (client.get(name) if kind == b"string" else client.hgetall(name) if kind == b"hash"
                     else client.zrange(name, 0, -1) if kind == b"zset" else b"")
            assert issued.secret.encode() not in repr(value).encode() and issued.secret.encode() not in name
    finally:
        client.close()
    for server in servers:
        server.stop()
        assert issued.secret not in server.stderr and "Traceback" not in server.stderr


def test_a_revoked_key_is_refused_by_every_replica_within_a_second(
        serve: Callable[..., Served], shared_env: tuple[dict[str, str], Upstream]) -> None:
    env, _ = shared_env
    servers = [serve(env), serve(env)]
    issued = make_key(env)
    auth = {"authorization": f"Bearer {issued.secret}"}
    for server in servers:
        assert httpx.get(server.base_url + "/models", headers=auth, timeout=10).status_code == 200
    revoked = httpx.post(f"{servers[0].root_url}/admin/keys/{issued.key.id}/revoke",
                         headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)
    assert revoked.status_code == 200
    at = time.monotonic()
    time.sleep(1.05)
    for server in servers:
        assert httpx.get(server.base_url + "/models", headers=auth, timeout=10).status_code == 401
    assert time.monotonic() - at < 3


def test_workers_share_a_port_and_their_metrics(
        serve: Callable[..., Served], shared_env: tuple[dict[str, str], Upstream]) -> None:
    env, up = shared_env
    server = serve(env, "--workers", "2")
    issued = make_key(env)
    reader = make_key(env, role="read")
    with openai.OpenAI(base_url=server.base_url, api_key=issued.secret, max_retries=0) as sdk:
        for i in range(12):
            sdk.chat.completions.create(model="gpt-4o-mini", max_tokens=10,
                                        messages=[{"role": "user", "content": f"Item {i}"}])
    with pytest.raises(openai.PermissionDeniedError):
        with openai.OpenAI(base_url=server.base_url, api_key=reader.secret, max_retries=0) as read_only:
            read_only.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    page = httpx.get(server.root_url + "/metrics", headers={"authorization": f"Bearer {reader.secret}"}, timeout=10)
    assert page.status_code == 200
    lines = [line for line in page.text.splitlines()
             if line.startswith("contentmill_model_calls_total{") and 'model="openai:gpt-4o-mini"' in line]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in lines) == 12 == up.stats()["requests"]
    assert httpx.get(server.root_url + "/metrics", timeout=10).status_code == 401


def test_workers_without_redis_hold_one_keys_budget_through_the_data_directory(
        serve: Callable[..., Served], upstream: Callable[..., Upstream], tmp_path: Path) -> None:
    """The embedded profile: two workers of one server share the data directory's admission file and SQLite
    ledger; a key's budget holds across them under 64 clients, one ledger row per upstream request."""
    up = upstream(api_key=[UPSTREAM_KEY], latency_ms=30, rpm=1_000_000, tpm=1_000_000_000)
    env = server_env(up.base_url, tmp_path / "data")
    server = serve(env, "--workers", "2")
    issued = make_key(env, budget_usd=BUDGET_USD, period="day")
    answered, refused, other = asyncio.run(_spend([server], issued.secret))
    assert other == 0 and refused == CLIENTS and answered > 10
    rows = calls(env, at_least=answered + refused)
    charged = [r for r in rows if r.outcome in ("ok", "error")]
    assert sum(r.cost_usd for r in charged) <= BUDGET_USD
    assert len(charged) == up.stats()["requests"] == answered
