"""Each API key's requests-per-minute and tokens-per-minute buckets, kept and reported as OpenAI keeps them."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from contentmill.testing.upstream.errors import ApiError

ORGANIZATION = "org-upstream"


def format_duration(seconds: float) -> str:
    """OpenAI's duration format for rate-limit resets (Go's, to the millisecond, rounded up): 120ms, 1.5s, 6m0s."""
    ms = math.ceil(round(seconds * 1000, 6))
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def rate_limited(model: str, kind: str, limit: int, used: int, requested: int, wait_s: float) -> ApiError:
    """OpenAI's 429 for a full bucket (``kind`` is ``requests`` or ``tokens``), with its Retry-After headers."""
    label = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
    message = (
        f"Rate limit reached for {model} in organization {ORGANIZATION} on {label}: Limit {limit}, "
        f"Used {used}, Requested {requested}. Please try again in {format_duration(wait_s)}."
    )
    headers = {"Retry-After": str(max(1, math.ceil(wait_s))), "retry-after-ms": str(math.ceil(wait_s * 1000))}
    return ApiError(429, message, kind=kind, code="rate_limit_exceeded", headers=headers)


def too_large(model: str, limit: int, requested: int) -> ApiError:
    message = (
        f"Request too large for {model} in organization {ORGANIZATION} on tokens per min (TPM): Limit {limit}, "
        f"Requested {requested}. The input or output tokens must be reduced in order to run successfully."
    )
    return ApiError(429, message, kind="tokens", code="rate_limit_exceeded")


class Bucket:
    """A continuously refilling allowance of ``limit`` units a minute, full at the start, as OpenAI keeps them."""

    __slots__ = ("limit", "_rate", "_level", "_stamp")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._rate = limit / 60.0
        self._level = float(limit)
        self._stamp = time.monotonic()

    def level(self, now: float) -> float:
        self._level = min(float(self.limit), self._level + (now - self._stamp) * self._rate)
        self._stamp = now
        return self._level

    def remaining(self, now: float) -> int:
        return int(self.level(now))

    def wait_s(self, amount: int, now: float) -> float:
        """Seconds until ``amount`` units are available (0 when they are now)."""
        return max(0.0, (amount - self.level(now)) / self._rate)

    def reset_s(self, now: float) -> float:
        """Seconds until the bucket is full again (OpenAI's x-ratelimit-reset-*)."""
        return (self.limit - self.level(now)) / self._rate

    def take(self, amount: int, now: float) -> None:
        self._level = self.level(now) - amount


@dataclass(slots=True)
class KeyLimits:
    """The RPM and TPM buckets of one API key."""

    requests: Bucket
    tokens: Bucket

    def headers(self) -> dict[str, str]:
        now = time.monotonic()
        return {
            "x-ratelimit-limit-requests": str(self.requests.limit),
            "x-ratelimit-limit-tokens": str(self.tokens.limit),
            "x-ratelimit-remaining-requests": str(self.requests.remaining(now)),
            "x-ratelimit-remaining-tokens": str(self.tokens.remaining(now)),
            "x-ratelimit-reset-requests": format_duration(self.requests.reset_s(now)),
            "x-ratelimit-reset-tokens": format_duration(self.tokens.reset_s(now)),
        }


class KeyBuckets:
    """Every key's buckets, each made full on the key's first request."""

    def __init__(self, rpm: int, tpm: int) -> None:
        self.rpm, self.tpm = rpm, tpm
        self._limits: dict[str, KeyLimits] = {}
        self._fresh_headers = KeyLimits(Bucket(rpm), Bucket(tpm)).headers()

    def headers(self, key: str | None) -> dict[str, str]:
        """The ``x-ratelimit-*`` headers of ``key``'s buckets (full ones for a key not seen yet)."""
        limits = self._limits.get(key) if key is not None else None
        return limits.headers() if limits is not None else dict(self._fresh_headers)

    def admit(self, key: str, model: str, tokens: int | None) -> None:
        """Take one request (and ``tokens``) from the key's buckets, or refuse with OpenAI's 429."""
        limits = self._limits.get(key)
        if limits is None:
            limits = self._limits[key] = KeyLimits(Bucket(self.rpm), Bucket(self.tpm))
        if tokens is not None and tokens > limits.tokens.limit:
            raise too_large(model, limits.tokens.limit, tokens)
        now = time.monotonic()
        requests_wait = limits.requests.wait_s(1, now)
        tokens_wait = limits.tokens.wait_s(tokens, now) if tokens is not None else 0.0
        if requests_wait or tokens_wait:
            bucket, amount = (limits.requests, 1) if requests_wait else (limits.tokens, tokens or 0)
            kind = "requests" if requests_wait else "tokens"
            used = bucket.limit - bucket.remaining(now)
            raise rate_limited(model, kind, bucket.limit, used, amount, max(requests_wait, tokens_wait))
        limits.requests.take(1, now)
        if tokens is not None:
            limits.tokens.take(tokens, now)
