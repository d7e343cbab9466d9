"""L2: Redis through redis.asyncio, binary values with a native TTL (``SET ... PX``) under a key prefix.

The client fails fast (short socket timeouts, one immediate retry for a connection the server dropped), so an
unreachable Redis costs a caller one short failure before the back-off skips the tier. Those socket timeouts
bound every command, so the tier adds no timer of its own by default (it would cost a hit about 5 us).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from contentmill.cache.base import BaseCache
from contentmill.cache.singleflight import SingleFlight
from contentmill.cache.stats import StatsRecorder

CLEAR_BATCH = 500


def connect(url: str, *, timeout: float = 0.5) -> Redis:
    """A binary-safe client for ``url`` that gives up quickly when the server is away."""
    return Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 1),
        decode_responses=False,
    )


class RedisCache(BaseCache):
    """Entries as Redis strings named ``prefix + namespace/scope/digest``."""

    tier = "redis"
    errors = (RedisError, OSError)

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "contentmill:cache:e:",
        ttl: float | None = 7 * 86400.0,
        timeout: float | None = None,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        owns_client: bool = False,
        stats: StatsRecorder | None = None,
        flight: SingleFlight | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(prefix=prefix, ttl=ttl, timeout=timeout, backoff_s=backoff_s,
                         max_backoff_s=max_backoff_s, stats=stats, flight=flight, clock=clock)
        self.client = client
        self.owns_client = owns_client

    async def _get(self, name: str) -> bytes | None:
        data: bytes | None = await self.client.get(name)  # type: ignore[assignment]  # binary client
        return data

    async def _set(self, name: str, data: bytes, ttl: float | None) -> bool:
        if ttl is None:
            await self.client.set(name, data)
        else:
            await self.client.set(name, data, px=max(1, int(ttl * 1000)))
        return True

    async def _delete(self, name: str) -> bool:
        return bool(await self.client.delete(name))

    async def _clear(self, prefix: str) -> int:
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
        removed, batch = 0, []
        async for name in self.client.scan_iter(match=pattern, count=1000):
            batch.append(name)
            if len(batch) >= CLEAR_BATCH:
                removed += await self.client.unlink(*batch)
                batch.clear()
        if batch:
            removed += await self.client.unlink(*batch)
        return removed

    async def release(self) -> None:
        if self.owns_client:
            await self.client.aclose()
