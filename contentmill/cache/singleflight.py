"""Single flight: concurrent identical requests make one provider call; the others wait for its result.

In one process the first caller of a key becomes its leader and the others await the leader's future.
Across processes the leaders race for a Redis lock (``SET NX PX``, a lease renewed while the computation
runs): the winner computes and stores the value, then releases the lock; the others poll the cache until the
value appears or the lock disappears (the holder failed, or died and its lease ran out), and then try the lock
themselves. The wait is bounded: past ``wait_s`` a caller computes on its own rather than hang. Without Redis
(or while it is unreachable) only in-process coalescing applies.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from contentmill.cache.backoff import Backoff
from contentmill.cache.entry import Hit

log = logging.getLogger("contentmill.cache")
T = TypeVar("T")

# Delete / extend the lock only while it is still ours (the lease may have passed to another holder).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
)
_REDIS_ERRORS = (RedisError, OSError, TimeoutError)


class _LeaderGone(Exception):
    """The leader was cancelled before it had a value; a waiter takes over."""


class SingleFlight:
    """Coalesces computations by name; ``redis`` (optional) extends it across processes."""

    def __init__(
        self,
        redis: Redis | None = None,
        *,
        prefix: str = "contentmill:cache:lock:",
        lease_s: float = 30.0,
        wait_s: float = 120.0,
        poll_s: tuple[float, float] = (0.005, 0.1),
        backoff_s: float = 1.0,
    ) -> None:
        if lease_s <= 0 or wait_s <= 0:
            raise ValueError("single-flight lease_s and wait_s must be positive seconds")
        self.redis = redis
        self.prefix = prefix
        self.lease_ms = max(1, int(lease_s * 1000))
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.backoff = Backoff("redis lock", backoff_s=backoff_s)
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._release = redis.register_script(_RELEASE) if redis is not None else None
        self._renew = redis.register_script(_RENEW) if redis is not None else None

    async def run(
        self,
        name: str,
        produce: Callable[[], Awaitable[T]],
        recheck: Callable[[], Awaitable[Hit[T] | None]],
    ) -> tuple[T, bool]:
        """``(value, shared)``: ``produce()``'s value, or another caller's (``shared=True``) for ``name``.

        ``recheck`` looks the value up in the cache without counting; ``produce`` computes and stores it.
        """
        while True:
            future = self._inflight.get(name)
            if future is None:
                return await self._lead(name, produce, recheck)
            try:
                return await asyncio.shield(future), True
            except _LeaderGone:
                continue

    async def _lead(
        self, name: str, produce: Callable[[], Awaitable[T]], recheck: Callable[[], Awaitable[Hit[T] | None]]
    ) -> tuple[T, bool]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[name] = future
        try:
            value, shared = await self._across_processes(name, produce, recheck)
        except Exception as exc:
            future.set_exception(exc)
            raise
        except BaseException:
            future.set_exception(_LeaderGone())
            raise
        else:
            future.set_result(value)
            return value, shared
        finally:
            del self._inflight[name]
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" log when nobody waited

    async def _across_processes(
        self, name: str, produce: Callable[[], Awaitable[T]], recheck: Callable[[], Awaitable[Hit[T] | None]]
    ) -> tuple[T, bool]:
        if self.redis is None or not self.backoff.available():
            return await produce(), False
        lock, token = self.prefix + name, secrets.token_hex(16)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                acquired = await self.redis.set(lock, token, nx=True, px=self.lease_ms)
            except _REDIS_ERRORS as exc:
                self.backoff.failed(exc, "lock")
                return await produce(), False
            self.backoff.succeeded()
            if acquired:
                return await self._hold(lock, token, produce, recheck)
            hit = await self._await_holder(lock, recheck, deadline)
            if hit is not None:
                return hit.value, True
            if time.monotonic() >= deadline:
                log.warning("waited %.0f s for another process to compute %s; computing it here",
                            self.wait_s, name)
                return await produce(), False

    async def _hold(
        self, lock: str, token: str, produce: Callable[[], Awaitable[T]],
        recheck: Callable[[], Awaitable[Hit[T] | None]],
    ) -> tuple[T, bool]:
        """Compute under the lock, renewing its lease, and release it once the value is stored."""
        renewing = asyncio.get_running_loop().create_task(self._keep_lease(lock, token))
        try:
            hit = await recheck()  # the previous holder may have stored it just before we got the lock
            if hit is not None:
                return hit.value, True
            return await produce(), False
        finally:
            renewing.cancel()
            try:
                await asyncio.wait([renewing])  # a cancellation of the holder itself still reaches its caller
            finally:
                assert self._release is not None
                with suppress(*_REDIS_ERRORS):
                    await self._release(keys=[lock], args=[token])

    async def _keep_lease(self, lock: str, token: str) -> None:
        """Renew the lease every third of it until cancelled. redis-py's asyncio client can absorb a cancellation
        that lands while a command is in flight (the command then returns as if nothing happened), so the task
        also looks at whether it was asked to stop after each renewal, or the holder would wait on it forever."""
        assert self._renew is not None
        me = asyncio.current_task()
        assert me is not None
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                renewed = await self._renew(keys=[lock], args=[token, self.lease_ms])
            except _REDIS_ERRORS:
                renewed = True  # Redis hiccup: try again at the next beat; the lease still runs meanwhile
            if me.cancelling():
                return
            if not renewed:
                log.warning("lost the single-flight lock %s; another process may compute it too", lock)
                return

    async def _await_holder(
        self, lock: str, recheck: Callable[[], Awaitable[Hit[T] | None]], deadline: float
    ) -> Hit[T] | None:
        """Poll for the holder's value until it appears, the lock goes away, or the deadline passes."""
        assert self.redis is not None
        delay, ceiling = self.poll_s
        while time.monotonic() < deadline:
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, ceiling)
            hit = await recheck()
            if hit is not None:
                return hit
            try:
                held = await self.redis.exists(lock)
            except _REDIS_ERRORS:
                return None
            if not held:
                return await recheck()  # released after storing, or failed/died: one last look
        return None
