"""Real backends for the cache tests: Redis (the one on 127.0.0.1:6379, or one started here), moto's S3 server
over HTTP, temporary directories. Every test works under its own key prefix / bucket and cleans up after."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cache_helpers import Clock, MakeBackend, RedisServer, listening, s3_client
from redis.asyncio import Redis

from contentmill.cache import (
    BaseCache,
    Cache,
    LocalDirCache,
    MemoryCache,
    RedisCache,
    S3Cache,
    SingleFlight,
    TieredCache,
)
from contentmill.cache.redis import connect

BACKENDS = ["memory", "redis", "localdir", "s3", "tiered", "tiered-local"]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The shared Redis on 127.0.0.1:6379 when it runs, else one started for this session."""
    if listening(6379):
        yield "redis://127.0.0.1:6379/0"
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.kill()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private Redis this test may kill and restart."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"cmtest-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis_client(redis_url: str, prefix: str) -> AsyncIterator[Redis]:
    client = connect(redis_url, timeout=2.0)
    try:
        yield client
    finally:
        names = [name async for name in client.scan_iter(match=f"{prefix}*", count=1000)]
        if names:
            await client.delete(*names)
        await client.aclose()


@pytest.fixture
def bucket(s3_endpoint: str, prefix: str) -> Iterator[tuple[Any, str]]:
    """A fresh bucket on the moto server and a client for it; emptied and removed afterwards."""
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket=prefix)
    try:
        yield client, prefix
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=prefix):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=prefix, Key=item["Key"])
        client.delete_bucket(Bucket=prefix)
        client.close()


@pytest.fixture
async def make_backend(
    prefix: str, tmp_path: Path, redis_client: Redis, bucket: tuple[Any, str]
) -> AsyncIterator[MakeBackend]:
    """``make_backend(kind, **options)``: a cache of that kind under this test's prefix; closed afterwards."""
    made: list[Cache] = []

    def redis(**options: Any) -> RedisCache:
        return RedisCache(redis_client, prefix=f"{prefix}:e:", **options)

    def s3(**options: Any) -> S3Cache:
        client, name = bucket
        return S3Cache(name, client=client, prefix=f"{prefix}/cache/", **options)

    def localdir(**options: Any) -> LocalDirCache:
        return LocalDirCache(tmp_path / "objects", **options)

    def make(kind: str, **options: Any) -> Cache:
        tiered_options = {k: options.pop(k) for k in ("media_threshold", "flight", "clock") if k in options}
        clocked = {"clock": tiered_options["clock"]} if "clock" in tiered_options else {}
        cache: Cache
        if kind == "memory":
            cache = MemoryCache(**options, **clocked)
        elif kind == "redis":
            cache = redis(**options, **clocked)
        elif kind == "localdir":
            cache = localdir(**options, **clocked)
        elif kind == "s3":
            cache = s3(**options, **clocked)
        elif kind == "tiered":
            tiers: list[BaseCache] = [MemoryCache(**options), redis(**options), s3(**options)]
            flight = tiered_options.pop("flight", None)
            flight = flight or SingleFlight(redis_client, prefix=f"{prefix}:lock:")
            cache = TieredCache(tiers, flight=flight, **tiered_options)
        elif kind == "tiered-local":
            cache = TieredCache([MemoryCache(**options), localdir(**options)], **tiered_options)
        else:
            raise ValueError(kind)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.clear()
        await cache.aclose()


@pytest.fixture(params=BACKENDS)
def cache(request: pytest.FixtureRequest, make_backend: MakeBackend) -> Cache:
    """The same acceptance cases run over every backend and over the tiered caches."""
    return make_backend(request.param)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=BACKENDS)
def clocked_cache(request: pytest.FixtureRequest, make_backend: MakeBackend, clock: Clock) -> Cache:
    """Each backend and tiered cache on ``clock``, which the test moves instead of sleeping."""
    return make_backend(request.param, clock=clock)
