"""The gateway end to end against the fake upstream: cache, budgets, limits across processes, fallbacks, orphans."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from contentmill.catalog import builtin_catalog
from contentmill.errors import BudgetExceeded, ProviderUnavailable, RateLimited, UnpricedModel
from contentmill.gateway import Gateway
from contentmill.gateway.admission_redis import RedisAdmission
from contentmill.ledger import Budget, LedgerStore, settings_url
from contentmill.ledger.report import report
from contentmill.requests import SpeechRequest, TextRequest
from contentmill.settings import Settings, load_settings

KEY = "sk-test-gateway-0123456789"
REDIS_URL = "redis://127.0.0.1:6379/0"
WORKER = Path(__file__).with_name("gateway_worker.py")


def settings_for(base_url: str, data_dir: Path, **overrides: Any) -> Settings:
    return load_settings(openai_base_url=base_url, openai_api_key=SecretStr(KEY), data_dir=data_dir, **overrides)


def ledger(settings: Settings) -> LedgerStore:
    return LedgerStore(settings_url(settings))


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


async def test_a_repeated_request_is_served_from_the_cache_and_costs_nothing(
        upstream: Callable[..., Any], tmp_path: Path) -> None:
    server = upstream()
    settings = settings_for(server.base_url, tmp_path)
    request = TextRequest.chat("Name a colour for a summer scarf.", max_tokens=20)
    async with Gateway(settings) as gateway:
        first = await gateway.generate(request, model="openai:gpt-4o-mini", tags={"team": "shop"})
        again = await gateway.generate(request, model="openai:gpt-4o-mini", tags={"team": "shop"})
        other_team = await gateway.generate(request, model="openai:gpt-4o-mini", tags={"team": "ads"})
        speech = SpeechRequest("Summer is here.")
        said = await gateway.speak(speech, model="openai:tts-1", tags={"team": "shop"})
        said_again = await gateway.speak(speech, model="openai:tts-1", tags={"team": "shop"})
    assert not first.cached and first.cost_usd > 0
    assert again.cached and again.cost_usd == 0 and again.saved_usd == pytest.approx(first.cost_usd)
    assert again.text == first.text and again.usage == first.usage
    assert not other_team.cached  # one team never gets another's output by accident
    assert said_again.cached and said_again.audio == said.audio and said_again.saved_usd == pytest.approx(said.cost_usd)
    assert server.stats()["requests"] == 3  # a chat for each team, and one speech
    with ledger(settings) as store:
        rows = store.calls()
    outcomes = sorted(r.outcome for r in rows)
    assert outcomes == ["cached", "cached", "ok", "ok", "ok"]
    cached = [r for r in rows if r.outcome == "cached"]
    assert sum(r.saved_usd for r in cached) == pytest.approx(first.cost_usd + said.cost_usd)
    assert all(r.cost_usd == 0 for r in cached) and all(r.request_hash for r in rows)


async def test_a_miss_reads_each_cache_tier_once_and_counts_one_miss(
        upstream: Callable[..., Any], tmp_path: Path) -> None:
    """The gateway looks a request up once: a miss is one miss on each tier, not one from the lookup and another
    from computing it; the repeat is one hit on the first tier and reads no further."""
    server = upstream()
    settings = settings_for(server.base_url, tmp_path)
    request = TextRequest.chat("Name a colour for a winter scarf.", max_tokens=20)
    async with Gateway(settings) as gateway:
        assert gateway.cache is not None
        counts = gateway.cache.stats.tiers
        await gateway.generate(request, model="openai:gpt-4o-mini", tags={"team": "shop"})
        assert {name: (t.hits, t.misses) for name, t in counts.items()} == {"memory": (0, 1), "objectstore": (0, 1)}
        again = await gateway.generate(request, model="openai:gpt-4o-mini", tags={"team": "shop"})
        assert again.cached
        assert {name: (t.hits, t.misses) for name, t in counts.items()} == {"memory": (1, 1), "objectstore": (0, 1)}
    assert server.stats()["requests"] == 1


async def test_a_hard_budget_refuses_before_it_is_passed(upstream: Callable[..., Any], tmp_path: Path) -> None:
    server = upstream()
    settings = settings_for(server.base_url, tmp_path)
    limit = 0.0002
    with ledger(settings) as store:
        store.set_budget(Budget(scope_key="team", scope_value="shop", period="day", limit_usd=limit))
    spent = 0.0
    async with Gateway(settings) as gateway:
        with pytest.raises(BudgetExceeded) as refused:
            for i in range(100):
                gen = await gateway.generate(TextRequest.chat(f"tagline {i}", max_tokens=60),
                                             model="openai:gpt-4o-mini", tags={"team": "shop"})
                spent += gen.cost_usd
        unrelated = await gateway.generate(TextRequest.chat("tagline", max_tokens=60), model="openai:gpt-4o-mini",
                                           tags={"team": "ads"})
    assert 0 < spent <= limit and unrelated.cost_usd > 0
    message = str(refused.value)
    assert "team=shop per day" in message and "limit 0.000200 USD" in message and "spent" in message
    with ledger(settings) as store:
        assert store.spent("team", "shop", datetime.now(UTC) - timedelta(days=1)) == pytest.approx(spent)
        assert [r.error_type for r in store.calls() if r.outcome == "refused"] == ["BudgetExceeded"]

    # A new process (a new gateway) starts from what the ledger says was spent, not from zero.
    async with Gateway(settings) as gateway:
        with pytest.raises(BudgetExceeded):
            await gateway.generate(TextRequest.chat("one more", max_tokens=60), model="openai:gpt-4o-mini",
                                   tags={"team": "shop"})


async def test_answers_given_before_settling_never_pass_a_budget_and_are_settled_by_close(
        upstream: Callable[..., Any], tmp_path: Path, redis_prefix: str) -> None:
    """The server's gateway answers before it settles: the reservation holds what was reserved meanwhile, so 40
    concurrent callers still stay inside the budget, and closing leaves no reservation open."""
    server = upstream()
    settings = settings_for(server.base_url, tmp_path)
    limit = 0.0003
    with ledger(settings) as store:
        store.set_budget(Budget(scope_key="team", scope_value="shop", period="day", limit_usd=limit))
    admission = RedisAdmission.from_url(REDIS_URL, prefix=redis_prefix + "adm:")

    async def one(gateway: Gateway, i: int) -> float | None:
        try:
            gen = await gateway.generate(TextRequest.chat(f"tagline {i}", max_tokens=40), model="openai:gpt-4o-mini",
                                         tags={"team": "shop"})
        except BudgetExceeded:
            return None
        return gen.cost_usd

    try:
        async with Gateway(settings, admission=admission, settle_in_background=True) as gateway:
            costs = await asyncio.gather(*(one(gateway, i) for i in range(40)))
        paid = [c for c in costs if c is not None]
        assert paid and len(paid) < len(costs)
        assert await admission.orphans(time.time() + 10**7) == []  # every reservation was settled at close
    finally:
        await admission.aclose()
    with ledger(settings) as store:
        charged = store.spent("team", "shop", datetime.now(UTC) - timedelta(days=1))
        assert len([r for r in store.calls() if r.outcome == "ok"]) == len(paid) == server.stats()["requests"]
    assert 0 < charged <= limit and charged == pytest.approx(sum(paid))


async def test_an_unpriced_model_is_refused_recorded_and_alerted(upstream: Callable[..., Any],
                                                                tmp_path: Path) -> None:
    server = upstream()
    settings = settings_for(server.base_url, tmp_path)
    async with Gateway(settings) as gateway:
        with pytest.raises(UnpricedModel):
            await gateway.generate(TextRequest.chat("hi"), model="openai:gpt-9-preview", tags={"team": "shop"})
        gateway.alerts.drain()
    with ledger(settings) as store:
        (row,) = store.calls()
        assert (row.outcome, row.error_type, row.cost_usd) == ("refused", "UnpricedModel", 0.0)
        assert [a.rule for a in store.alerts()] == ["model_unpriced"]
    assert server.stats()["requests"] == 0


async def test_fallback_to_the_next_model_and_cooldown(upstream: Callable[..., Any], tmp_path: Path) -> None:
    server = upstream()
    catalog = builtin_catalog().merged({
        "providers": {"down": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": None}},
        "models": {"down:model": {"input_per_mtok": 0.1, "output_per_mtok": 0.1, "tokenizer": "o200k_base"}},
    }, "test")
    settings = settings_for(server.base_url, tmp_path, max_retries=0)
    request = TextRequest.chat("hello", max_tokens=10)
    async with Gateway(settings, catalog) as gateway:
        for _ in range(3):
            gen = await gateway.generate(request, model="down:model", fallbacks=["openai:gpt-4o-mini"],
                                         cache=False)
            assert gen.model == "openai:gpt-4o-mini"
        assert gateway.cooldowns.cooling("down:model") > 0  # three failures in a row: it rests
        await gateway.generate(request, model="down:model", fallbacks=["openai:gpt-4o-mini"], cache=False)
        with pytest.raises(ProviderUnavailable):
            await gateway.generate(request, model="down:model", cache=False)  # no fallback: it is tried, and fails
    with ledger(settings) as store:
        errors = [r for r in store.calls() if r.model == "down:model"]
    assert len(errors) == 4 and all(r.outcome == "error" and r.cost_usd == 0 for r in errors)
    assert server.stats()["requests"] == 4


def worker_env(base_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": KEY, "CONTENTMILL_DATA_DIR": str(data_dir),
            **extra}


def run_workers(env: dict[str, str], calls: int, concurrency: int, max_tokens: int, processes: int = 2
                ) -> list[dict[str, Any]]:
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(calls), str(concurrency), str(max_tokens)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.mark.parametrize(("backend", "processes", "concurrency"), [("sqlite", 8, 8), ("redis", 2, 32)])
def test_64_callers_in_several_processes_never_pass_a_hard_budget(
        upstream: Callable[..., Any], tmp_path: Path, redis_prefix: str, backend: str, processes: int,
        concurrency: int) -> None:
    """Without Redis the processes share the data directory's SQLite admission; with Redis, Redis."""
    server = upstream()
    limit = 0.0004
    settings = settings_for(server.base_url, tmp_path)
    with ledger(settings) as store:
        store.set_budget(Budget(scope_key="team", scope_value="shop", period="day", limit_usd=limit))
    extra = {"CONTENTMILL_REDIS_URL": REDIS_URL, "CONTENTMILL_REDIS_PREFIX": redis_prefix} if backend == "redis" else {}
    env = worker_env(server.base_url, tmp_path, **extra)
    results = run_workers(env, calls=60 * 2 // processes, concurrency=concurrency, max_tokens=40,
                          processes=processes)
    ok = sum(r["ok"] for r in results)
    assert ok > 0 and sum(r["budget_refused"] for r in results) > 0 and all(r["errors"] == 0 for r in results)
    with ledger(settings) as store:
        charged = store.spent("team", "shop", datetime.now(UTC) - timedelta(days=1))
    assert 0 < charged <= limit  # zero overshoot
    assert charged == pytest.approx(sum(r["cost_usd"] for r in results))
    assert server.stats()["requests"] == ok


def test_64_callers_in_2_processes_stay_inside_the_models_tpm(upstream: Callable[..., Any], tmp_path: Path,
                                                             redis_prefix: str) -> None:
    tpm = 12_000
    server = upstream(tpm=tpm)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(f"models:\n  openai:gpt-4o-mini: {{tpm: {tpm}, rpm: 10000}}\n")
    env = worker_env(server.base_url, tmp_path, CONTENTMILL_REDIS_URL=REDIS_URL, CONTENTMILL_REDIS_PREFIX=redis_prefix,
                     CONTENTMILL_CATALOG_FILE=str(catalog), CONTENTMILL_ADMISSION_WAIT_S="120")
    started = time.monotonic()
    results = run_workers(env, calls=53, concurrency=32, max_tokens=100)
    elapsed = time.monotonic() - started
    stats = server.stats()
    assert all(r["ok"] == 53 for r in results), results
    assert stats["rejected_429"] == 0 and stats["requests"] == 106
    # 106 calls of ~125 tokens is more than one minute's 12,000: the gateway held some back rather than send them.
    assert elapsed > 3


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_a_worker_killed_mid_call_leaves_an_orphan_that_is_charged_and_flagged(
        upstream: Callable[..., Any], tmp_path: Path, redis_prefix: str, backend: str) -> None:
    server = upstream(latency_ms=60_000)
    extra = {"CONTENTMILL_REQUEST_TIMEOUT_S": "120"}
    if backend == "redis":
        extra.update(CONTENTMILL_REDIS_URL=REDIS_URL, CONTENTMILL_REDIS_PREFIX=redis_prefix)
    env = worker_env(server.base_url, tmp_path, **extra)
    proc = subprocess.Popen([sys.executable, str(WORKER), "1", "1", "50", "hang"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        admission = tmp_path / "admission.sqlite3"
        client = redis.Redis.from_url(REDIS_URL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until the reservation is made and the call is in flight
            held = _reserved(admission) if backend == "sqlite" else \
                client.zcard(redis_prefix + "adm:reservations") > 0
            if held:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the worker never reserved")
        client.close()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    settings = load_settings(data_dir=tmp_path, openai_base_url=server.base_url, openai_api_key=SecretStr(KEY),
                             redis_url=REDIS_URL if backend == "redis" else None, redis_prefix=redis_prefix)
    async with Gateway(settings) as gateway:
        if backend == "sqlite":  # the dead process ran on this machine: its reservation is an orphan at once
            (orphan,) = await gateway.sweep_orphans()
        else:  # Redis cannot know the process is gone: its deadline decides
            assert await gateway.sweep_orphans() == []  # not late yet: a slow call is not an orphan
            (orphan,) = await gateway.sweep_orphans(now=time.time() + 3600)
        assert await gateway.sweep_orphans(now=time.time() + 3600) == []  # charged once
        gateway.alerts.drain()
    assert orphan.outcome == "orphaned" and orphan.flagged and orphan.tags == {"team": "shop"}
    with ledger(settings) as store:
        [alert] = store.alerts(datetime.now(UTC) - timedelta(hours=1), rule="orphan_charged")
    assert alert.data["call_id"] == orphan.id and alert.severity == "warning"
    assert orphan.cost_usd == pytest.approx(orphan.reserved_usd) and orphan.cost_usd > 0
    with ledger(settings) as store:
        (row,) = store.calls()
        assert row.id == orphan.id and row.outcome == "orphaned"


def _reserved(path: Path) -> bool:
    if not path.is_file():
        return False
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        try:
            return bool(conn.execute("SELECT count(*) FROM reservations").fetchone()[0])
        except sqlite3.OperationalError:  # the table is being made
            return False


async def test_quotas_and_rate_limits_per_team_from_settings(upstream: Callable[..., Any], tmp_path: Path) -> None:
    server = upstream()
    settings = settings_for(
        server.base_url, tmp_path,
        quotas=[{"scope": "team=*", "unit": "tokens", "limit": 300, "period": "day"}],
        rate_limits=[{"scope": "team=ads", "unit": "requests", "per_minute": 2}],
    )
    used = 0
    async with Gateway(settings) as gateway:
        with pytest.raises(RateLimited, match="tokens quota of team=shop per day") as refused:
            for i in range(50):
                gen = await gateway.generate(TextRequest.chat(f"tagline {i}", max_tokens=100),
                                             model="openai:gpt-4o-mini", tags={"team": "shop"}, cache=False)
                used += gen.usage.input_tokens + gen.usage.output_tokens
        assert refused.value.retry_after is None  # a full quota does not refill within the day
        for i in range(2):
            await gateway.generate(TextRequest.chat(f"ad {i}", max_tokens=10), model="openai:gpt-4o-mini",
                                   tags={"team": "ads"}, cache=False)
        with pytest.raises(RateLimited, match="requests per minute for team=ads") as throttled:
            await gateway.generate(TextRequest.chat("ad 3", max_tokens=10), model="openai:gpt-4o-mini",
                                   tags={"team": "ads"}, cache=False, wait_s=0)
    assert 0 < used <= 300  # the quota counts actual usage and is never passed
    assert throttled.value.retry_after == pytest.approx(30, abs=1)


async def test_a_call_that_waited_for_admission_records_the_wait_apart_from_the_providers_latency(
        upstream: Callable[..., Any], tmp_path: Path) -> None:
    """The second call finds the model's TPM spent by the first (a vendor's TPM gives nothing back) and waits
    about a second for it to refill: that wait is the call's admission_wait_s, not part of its latency_s, so the
    router ranks the vendor by the vendor's speed and `contentmill report` shows what our own limits cost."""
    tpm = 6_000  # held to 95%: 5,700 tokens a minute, 95 a second
    server = upstream("--latency-ms", "50")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(f"models:\n  openai:gpt-4o-mini: {{tpm: {tpm}, rpm: 10000}}\n")
    settings = settings_for(server.base_url, tmp_path, catalog_file=catalog)
    async with Gateway(settings) as gateway:
        for i in range(2):  # each reserves ~2,910 tokens: the second finds ~2,790 and waits for ~120 more
            await gateway.generate(TextRequest.chat(f"slogan {i}", max_tokens=2_900), model="openai:gpt-4o-mini",
                                   tags={"team": "shop"}, cache=False)
    with ledger(settings) as store:
        first, second = sorted(store.calls(), key=lambda r: r.ts)
        rows = {row["team"]: row for row in report(store, by=["team"], since=first.ts - timedelta(minutes=1),
                                                   until=datetime.now(UTC)).rows}
    assert first.admission_wait_s < 0.5 < second.admission_wait_s < 10
    assert 0.05 <= second.latency_s < second.admission_wait_s  # the provider's 50 ms, not the wait
    assert rows["shop"]["admission_wait_s"] == pytest.approx(first.admission_wait_s + second.admission_wait_s)
