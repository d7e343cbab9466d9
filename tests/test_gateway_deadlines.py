"""A call's time is bounded and its reservation outlives it: a vendor whose body trickles in is cut at the
timeout, and a live call is never swept as an orphan; a sweep charges a reservation once, whatever holds it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from contentmill.errors import ProviderTimeout
from contentmill.gateway import Gateway
from contentmill.gateway.admission import MemoryAdmission
from contentmill.ledger import LedgerStore, settings_url
from contentmill.requests import TextRequest
from contentmill.settings import Settings, load_settings

KEY = "sk-test-deadlines-0123456789"
MODEL = "openai:gpt-4o-mini"


def settings_for(base_url: str, data_dir: Path, **overrides: Any) -> Settings:
    return load_settings(openai_base_url=base_url, openai_api_key=SecretStr(KEY), data_dir=data_dir,
                         monitor_interval_s=0, **overrides)


async def test_a_body_that_trickles_ends_at_the_timeout_with_one_row(
        upstream: Callable[..., Any], tmp_path: Path) -> None:
    server = upstream(fault="trickle")
    settings = settings_for(server.base_url, tmp_path, request_timeout_s=2, max_retries=1)
    async with Gateway(settings) as gateway:
        started = time.monotonic()
        call = asyncio.ensure_future(gateway.generate(TextRequest.chat("Hello", max_tokens=20), model=MODEL,
                                                      cache=False))
        await asyncio.sleep(1.0)
        assert await gateway.sweep_orphans() == []  # in flight: not an orphan
        with pytest.raises(ProviderTimeout, match="no whole answer within 2 s"):
            await call
        elapsed = time.monotonic() - started
        assert await gateway.sweep_orphans(now=time.time() + 3600) == []  # settled: nothing left to sweep
    assert elapsed < 2 * 2 + 20 + 5  # two attempts of 2 s and the wait between them, not minutes
    store = LedgerStore(settings_url(settings))
    try:
        [row] = store.calls()
    finally:
        store.close()
    assert row.outcome == "error" and row.error_type == "ProviderTimeout" and row.cost_usd == 0


async def test_a_reservation_in_memory_and_in_the_journal_is_charged_once(
        upstream: Callable[..., Any], tmp_path: Path) -> None:
    server = upstream(latency_ms=30_000)
    settings = settings_for(server.base_url, tmp_path, request_timeout_s=60)
    async with Gateway(settings, admission=MemoryAdmission()) as gateway:
        call = asyncio.ensure_future(gateway.generate(TextRequest.chat("Hello", max_tokens=20), model=MODEL,
                                                      cache=False))
        journal = tmp_path / "reservations.journal"
        for _ in range(200):
            if journal.is_file() and b"O " in journal.read_bytes():
                break
            await asyncio.sleep(0.05)
        swept = await gateway.sweep_orphans(now=time.time() + 3600)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    assert len(swept) == 1 and swept[0].outcome == "orphaned"


async def test_a_stream_held_open_past_its_reservations_time_is_kept_alive_not_swept(
        upstream: Callable[..., Any], tmp_path: Path) -> None:
    server = upstream()
    settings = settings_for(server.base_url, tmp_path, request_timeout_s=1, max_retries=0)  # reservations: 6 s
    async with Gateway(settings) as gateway:
        stream = await gateway.stream(TextRequest.chat("Tell me about mugs.", max_tokens=30), model=MODEL,
                                      cache=False)
        await asyncio.sleep(8.0)  # a slow reader: past the first deadline, renewed every 2 s
        assert await gateway.sweep_orphans() == []
        text = "".join([piece.delta async for piece in stream])
        assert text and stream.generation is not None and stream.generation.cost_usd > 0
    store = LedgerStore(settings_url(settings))
    try:
        [row] = store.calls()
    finally:
        store.close()
    assert row.outcome == "ok" and row.cost_usd == pytest.approx(stream.generation.cost_usd)
