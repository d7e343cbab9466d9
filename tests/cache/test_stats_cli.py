"""Counters persist where another process reads them: ``contentmill cache stats`` and ``clear`` run as their
own processes against what a cache in this process recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from contentmill.cache import CacheConfig, MemoryCache, TieredCache, build_cache, build_key
from contentmill.cache.redis import connect
from contentmill.cache.stats import RedisStatsStore, StatsRecorder
from contentmill.errors import ConfigError
from contentmill.settings import load_settings

KEY = build_key(model="openai:gpt-4o-mini", tenant="team-a", input="Describe a walnut desk lamp.")
RESULT = {"text": "A warm walnut lamp.", "cost_usd": 0.25}
CLI = "from contentmill.commands.cache import cache_app; cache_app()"


def cli(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    variables = {name: value for name, value in os.environ.items() if not name.startswith("CONTENTMILL_")}
    env = {**variables, **(env or {}), "CONTENTMILL_DATA_DIR": str(data_dir)}
    command = [sys.executable, "-c", CLI, *args]
    return subprocess.run(command, cwd=data_dir.parent, env=env, capture_output=True, text=True, timeout=60)


async def compute() -> dict[str, Any]:
    return RESULT


async def use_cache(data_dir: Path) -> list[bool]:
    """Two identical requests through a fresh cache (as a new process has); their hit flags."""
    flags = []
    async with build_cache(CacheConfig(data_dir=data_dir)) as cache:
        for _ in range(2):
            value, hit = await cache.get_or_compute(KEY, compute, cost_usd=lambda r: r["cost_usd"])
            assert value == RESULT
            flags.append(hit)
    return flags


async def test_stats_shows_what_another_process_recorded(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert await use_cache(data_dir) == [False, True]
    assert await use_cache(data_dir) == [True, True]  # memory is new, the local directory is not
    done = cli(data_dir, "stats", "--json")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    tiers = report["tiers"]
    assert tiers["memory"]["hits"] == 2 and tiers["objectstore"]["hits"] == 1
    assert tiers["objectstore"]["writes"] == 1 and tiers["memory"]["writes"] == 2  # a write, then a promotion
    assert report["total"]["hits"] == 3
    assert report["total"]["saved_usd"] == pytest.approx(0.75)
    assert tiers["memory"]["hit_rate"] == pytest.approx(0.5)
    assert "sqlite" in report["store"]

    table = cli(data_dir, "stats")
    assert table.returncode == 0 and "objectstore" in table.stdout and "$0.75" in table.stdout


async def test_clear_empties_the_object_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await use_cache(data_dir)
    done = cli(data_dir, "clear", "--tier", "objectstore", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"cleared": {"objectstore": 1}}
    async with build_cache(CacheConfig(data_dir=data_dir)) as cache:
        assert await cache.get(KEY) is None


async def test_clear_memory_reaches_a_running_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with build_cache(CacheConfig(data_dir=data_dir, cache_stats_flush_s=3600)) as cache:
        await cache.set(KEY, RESULT)
        await cache.stats.flush()
        done = cli(data_dir, "clear", "--tier", "memory", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["memory_epoch"] == 1
        await cache.stats.flush()  # what the periodic flush does
        hit = await cache.get(KEY)
        assert hit is not None and hit.tier == "objectstore"


def test_clearing_a_tier_that_is_not_configured_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = cli(tmp_path / "data", "clear", "--tier", "redis", "--json")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "CONTENTMILL_REDIS_URL" in done.stderr


def test_clearing_a_bucket_that_does_not_exist_is_one_line_and_exit_1(tmp_path: Path, s3_endpoint: str) -> None:
    variables = {"CONTENTMILL_S3_BUCKET": "no-such-bucket-here", "CONTENTMILL_S3_ENDPOINT_URL": s3_endpoint,
                 "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    done = cli(tmp_path / "data", "clear", "--tier", "objectstore", "--json", env=variables)
    assert done.returncode == 1 and done.stdout == "" and done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"contentmill: bucket no-such-bucket-here does not exist at {s3_endpoint} ")
    assert done.stderr.rstrip().endswith("create it, or set CONTENTMILL_S3_BUCKET to one that does")


def test_an_unknown_tier_is_refused(tmp_path: Path) -> None:
    done = cli(tmp_path / "data", "clear", "--tier", "disk")
    assert done.returncode != 0 and "disk" in done.stderr


async def test_redis_stats_add_up_over_instances(redis_url: str, redis_client: Redis, prefix: str) -> None:
    other = connect(redis_url)
    try:
        for client in (redis_client, other):
            recorder = StatsRecorder(RedisStatsStore(client, prefix))
            cache = TieredCache([MemoryCache()], stats=recorder)
            await cache.set(KEY, RESULT, cost_usd=0.5)
            await cache.get(KEY)
            await cache.aclose()
        totals = await RedisStatsStore(redis_client, prefix).read()
        assert totals["memory"]["hits"] == 2 and totals["memory"]["saved_usd"] == pytest.approx(1.0)
    finally:
        await other.aclose()


def test_cache_config_reads_the_settings_and_names_bad_values(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/0", s3_bucket="media")
    config = CacheConfig.from_settings(settings)
    assert config.data_dir == tmp_path and config.redis_url == "redis://127.0.0.1:6379/0"
    assert config.s3_bucket == "media" and config.s3_prefix == settings.s3_prefix
    assert CacheConfig.from_settings(settings, cache_memory_ttl_s=5).cache_memory_ttl_s == 5
    with pytest.raises(ConfigError, match="CONTENTMILL_CACHE_MEMORY_MAX_BYTES"):
        CacheConfig(cache_memory_max_bytes=0)


async def test_stats_and_clear_keep_to_the_installations_redis_prefix(
        tmp_path: Path, redis_url: str, redis_client: Redis, prefix: str) -> None:
    """Two installations on one Redis, each under its CONTENTMILL_REDIS_PREFIX: the CLI of one reads and clears
    only its own entries and counters, where the gateway of that installation writes them."""
    ours, theirs = f"{prefix}-a:", f"{prefix}-b:"
    for installation in (ours, theirs):
        settings = load_settings(data_dir=tmp_path / installation, redis_url=redis_url, redis_prefix=installation)
        async with build_cache(CacheConfig.from_settings(settings)) as cache:
            await cache.get_or_compute(KEY, compute, cost_usd=lambda r: r["cost_usd"])
            await cache.get(KEY)
    def ours_cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith("CONTENTMILL_")}
        env.update(CONTENTMILL_DATA_DIR=str(tmp_path / ours), CONTENTMILL_REDIS_URL=redis_url,
                   CONTENTMILL_REDIS_PREFIX=ours)
        return subprocess.run([sys.executable, "-c", CLI, *args], env=env, capture_output=True, text=True,
                              timeout=60)

    stats = json.loads(ours_cli("stats", "--json").stdout)
    assert stats["store"] == f"redis hash {ours}cache:stats"
    assert stats["tiers"]["memory"]["hits"] == 1 and stats["tiers"]["redis"]["writes"] == 1  # ours alone
    entries = {name: [n async for n in redis_client.scan_iter(match=f"{name}cache:e:*")] for name in (ours, theirs)}
    assert entries[ours] and entries[theirs]
    cleared = ours_cli("clear", "--tier", "redis", "--json")
    assert cleared.returncode == 0, cleared.stderr
    assert [n async for n in redis_client.scan_iter(match=f"{ours}cache:e:*")] == []
    assert [n async for n in redis_client.scan_iter(match=f"{theirs}cache:e:*")] == entries[theirs]
