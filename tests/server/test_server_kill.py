"""A server killed with SIGKILL just after it answered: the call it paid for still ends in exactly one ledger row.

The server sends an answer before it settles the call's reservation and writes its row. The row goes first, and
the reservation is settled only once the ledger keeps it; so a kill within the ledger writer's round (0.2 s)
leaves the reservation open, and the next sweep charges it as reserved and writes its row. Settled first, such a
kill lost the row of a paid call while its budget stayed charged. A sweep never writes a second row for a
reservation whose row the ledger already has.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import openai
import pytest
from pydantic import SecretStr
from server_helpers import UPSTREAM_KEY, calls, ledger, make_key, server_env

from contentmill.gateway import Gateway
from contentmill.gateway.admission import Claim, Reservation
from contentmill.ledger import CallRecord
from contentmill.metering import Usage
from contentmill.settings import Settings, load_settings
from contentmill.testing.harness import Served, Upstream

REDIS_URL = "redis://127.0.0.1:6379/0"


def _settings(env: dict[str, str]) -> Settings:
    return load_settings(
        data_dir=Path(env["CONTENTMILL_DATA_DIR"]), openai_base_url=env["OPENAI_BASE_URL"],
        openai_api_key=SecretStr(UPSTREAM_KEY), monitor_interval_s=0,
        **({"redis_url": env["CONTENTMILL_REDIS_URL"], "redis_prefix": env["CONTENTMILL_REDIS_PREFIX"]}
           if "CONTENTMILL_REDIS_URL" in env else {}))


@pytest.mark.parametrize(("admission", "stream"), [("embedded", False), ("redis", False), ("redis", True)])
def test_a_server_killed_right_after_answering_leaves_its_paid_call_one_row(
        admission: str, stream: bool, serve: Callable[..., Served], upstream_server: Upstream,
        sdk: Callable[..., openai.OpenAI], redis_prefix: str, tmp_path: Path) -> None:
    extra = {"redis_url": REDIS_URL, "redis_prefix": redis_prefix} if admission == "redis" else {}
    env = server_env(upstream_server.base_url, tmp_path / "data", **extra)
    key = make_key(env, budget_usd=1.0, period="day")
    server = serve(env)
    ask = {"model": "gpt-4o-mini", "max_tokens": 40, "extra_headers": {"x-contentmill-cache": "off"},
           "messages": [{"role": "user", "content": "Name a walnut desk lamp."}]}
    client = sdk(server, key.secret)
    if stream:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in
                       client.chat.completions.create(stream=True, **ask) if chunk.choices)  # type: ignore[call-overload]
    else:
        text = client.chat.completions.create(**ask).choices[0].message.content or ""  # type: ignore[call-overload]
    server.process.kill()  # at once: within the writer's round after the answer's last byte
    server.process.wait()
    assert text

    async def sweep() -> list[CallRecord]:
        async with Gateway(_settings(env)) as gateway:
            return await gateway.sweep_orphans(now=time.time() + 3600)

    swept = asyncio.run(sweep())
    rows = calls(env, settle_s=0.0)
    assert upstream_server.stats()["requests"] == 1
    assert len(rows) == 1, rows  # the answered row, or the sweep's: never none, never both
    (row,) = rows
    assert row.tags["vkey"] == key.key.id and row.cost_usd > 0
    assert len(swept) == (1 if row.outcome == "orphaned" else 0)
    assert asyncio.run(sweep()) == []  # charged once


def test_a_sweep_writes_no_second_row_for_a_reservation_the_ledger_has(tmp_path: Path,
                                                                        upstream_server: Upstream) -> None:
    env = server_env(upstream_server.base_url, tmp_path / "data")
    claim = Claim("budget:team=shop:day", "counter", 0.002, 1.0, ttl_s=86400.0, label="budget team=shop per day")

    async def run() -> tuple[list[CallRecord], Reservation, Reservation]:
        async with Gateway(_settings(env)) as gateway:
            meter = gateway.meter
            opened = []
            for _ in range(2):
                outcome = await meter.reserve([claim], ttl_s=60.0, payload="")
                assert isinstance(outcome, Reservation)
                opened.append(outcome)
            recorded, lost = opened
            # The row of the first was kept, then its process died before settling; the second left no row.
            meter.record(CallRecord(model="openai:gpt-4o-mini", api_type="text", estimate=Usage(), outcome="ok",
                                    cost_usd=0.001, reservation_id=recorded.id, tags={"team": "shop"}))
            meter.ledger.flush()
            swept = await gateway.sweep_orphans(now=time.time() + 3600)
            return swept, recorded, lost

    swept, recorded, lost = asyncio.run(run())
    assert [r.reservation_id for r in swept] == [lost.id]
    store = ledger(env)
    try:
        rows = store.calls()
    finally:
        store.close()
    assert sorted((r.reservation_id, r.outcome) for r in rows) == sorted(
        [(recorded.id, "ok"), (lost.id, "orphaned")])
