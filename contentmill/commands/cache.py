"""``contentmill cache``: what the response cache saved, per tier, and clearing a tier.

Counters come from the shared stats store (Redis when CONTENTMILL_REDIS_URL is set, else a SQLite file in
CONTENTMILL_DATA_DIR), so they add up every process that used the cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table

from contentmill.cache.config import CacheConfig, object_store, redis_client, stats_store
from contentmill.cache.redis import RedisCache
from contentmill.cache.stats import summarize
from contentmill.commands import JsonOption, emit_json, fail, settings_or_fail
from contentmill.errors import ContentmillError

cache_app = typer.Typer(
    help="The response cache: what it saved, and clearing it.", no_args_is_help=True, add_completion=False
)
console = Console()
T = TypeVar("T")
BACKEND_ERRORS = (RedisError, OSError)  # the object store says its own failures as ContentmillErrors


class Tier(StrEnum):
    memory = "memory"
    redis = "redis"
    objectstore = "objectstore"
    all = "all"


def _run(work: Coroutine[Any, Any, T], doing: str) -> T:
    """Run a coroutine; a contentmill or backend error becomes one line on stderr and exit code 1."""
    try:
        return asyncio.run(work)
    except ContentmillError as exc:
        fail(str(exc))
    except BACKEND_ERRORS as exc:
        fail(f"could not {doing}: {type(exc).__name__}: {exc}")


def _config() -> CacheConfig:
    try:
        return CacheConfig.from_settings(settings_or_fail())
    except ContentmillError as exc:
        fail(str(exc))


async def _read_stats(config: CacheConfig) -> tuple[str, dict[str, dict[str, float]]]:
    client = redis_client(config)
    try:
        store = stats_store(config, client)
        return store.description, summarize(await store.read())
    finally:
        if client is not None:
            await client.aclose()


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def _with_rates(rows: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for tier, row in rows.items():
        looked = row["hits"] + row["misses"]
        out[tier] = {**row, "saved_usd": round(row["saved_usd"], 10),
                     "hit_rate": round(row["hits"] / looked, 4) if looked else None}
    return out


@cache_app.command()
def stats(json_out: JsonOption = False) -> None:
    """Hits, misses, bytes, errors and saved USD per tier, summed over every process."""
    config = _config()
    source, rows = _run(_read_stats(config), "read the cache stats")
    tiers = _with_rates(rows)
    total = {
        "hits": sum(int(r["hits"]) for r in rows.values()),
        "errors": sum(int(r["errors"]) for r in rows.values()),
        "saved_usd": round(sum(r["saved_usd"] for r in rows.values()), 10),
    }
    if json_out:
        emit_json({"store": source, "tiers": tiers, "total": total})
        return
    table = Table(title=f"contentmill cache ({source})")
    table.add_column("tier", no_wrap=True)
    for name in ("hits", "misses", "hit rate", "read", "written", "errors", "saved USD"):
        table.add_column(name, justify="right")
    for tier, row in tiers.items():
        rate = "-" if row["hit_rate"] is None else f"{row['hit_rate']:.1%}"
        table.add_row(
            tier, f"{row['hits']:,}", f"{row['misses']:,}", rate, _size(row["bytes_read"]),
            _size(row["bytes_written"]), f"{row['errors']:,}", f"${row['saved_usd']:,.4f}",
        )
    console.print(table)
    console.print(f"{total['hits']:,} hits saved ${total['saved_usd']:,.6f}", highlight=False)


async def _clear(config: CacheConfig, tier: Tier) -> dict[str, Any]:
    client = redis_client(config)
    if tier is Tier.redis and client is None:
        raise ContentmillError("the redis tier is not configured: set CONTENTMILL_REDIS_URL to clear it")
    result: dict[str, Any] = {"cleared": {}}
    try:
        if tier in (Tier.memory, Tier.all):
            result["memory_epoch"] = await stats_store(config, client).bump_epoch("memory")
        if tier in (Tier.redis, Tier.all) and client is not None:
            redis = RedisCache(client, prefix=config.cache_redis_prefix + "e:")
            result["cleared"]["redis"] = await redis.clear()
        if tier in (Tier.objectstore, Tier.all):
            store = object_store(config)
            try:
                result["cleared"]["objectstore"] = await store.clear()
            finally:
                await store.aclose()
    finally:
        if client is not None:
            await client.aclose()
    return result


@cache_app.command()
def clear(
    tier: Annotated[Tier, typer.Option("--tier", case_sensitive=False, help="Which tier to empty.")],
    json_out: JsonOption = False,
) -> None:
    """Empty a tier. The memory tier lives in each running process; each empties it at its next flush."""
    config = _config()
    result = _run(_clear(config, tier), f"clear the {tier.value} tier")
    if json_out:
        emit_json(result)
        return
    for name, count in result["cleared"].items():
        console.print(f"{name}: removed {count:,} entries", highlight=False)
    if "memory_epoch" in result:
        console.print(
            f"memory: running processes empty their memory tier within {config.cache_stats_flush_s:g} s",
            highlight=False,
        )
