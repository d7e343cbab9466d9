"""Retries with exponential backoff and full jitter that honour the provider's Retry-After."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from contentmill.errors import ProviderError

T = TypeVar("T")
log = logging.getLogger("contentmill.gateway")
_JITTER = random.Random()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 2
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0

    def delay(self, attempt: int, error: ProviderError, rng: random.Random) -> float:
        """Wait before retry number ``attempt`` (1-based): Retry-After when given, else full jitter."""
        if error.retry_after is not None:
            return min(error.retry_after, self.max_delay_s)
        return rng.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


async def call_with_retries(
    call: Callable[[], Awaitable[T]], policy: RetryPolicy, rng: random.Random | None = None
) -> tuple[T, int]:
    """Run ``call`` until it succeeds or fails in a way that retrying cannot fix; returns (result, attempts).

    Only errors marked retryable (429, 5xx, timeouts, unreadable answers) are retried: auth and bad
    requests fail at once, as retrying them only costs time.
    """
    rng = rng or _JITTER
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call(), attempt
        except ProviderError as error:
            if not error.retryable or attempt > policy.max_retries:
                raise
            wait = policy.delay(attempt, error, rng)
            log.info("retrying %s after %s in %.2f s (attempt %d)", error.model, type(error).__name__, wait, attempt)
            await asyncio.sleep(wait)
