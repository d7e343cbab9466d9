"""What every route of one fake upstream goes through: keys, latency, injected faults, admission and stats.

A route module (``online``, ``batches``, ``visuals``) gets the server's ``Service`` and wraps its handlers with
``Service.endpoint``, which answers an ``ApiError`` in OpenAI's shape and puts the request id and the key's
``x-ratelimit-*`` headers on every answer.
"""

from __future__ import annotations

import asyncio
import os
import random

from aiohttp import web

from contentmill.testing.upstream.common import Endpoint, Exchange, Handler, key_fingerprint, sleep
from contentmill.testing.upstream.config import FAULTS, USAGE_FAULTS, UpstreamConfig
from contentmill.testing.upstream.errors import ApiError, bad_request, server_error
from contentmill.testing.upstream.limits import KeyBuckets, rate_limited
from contentmill.testing.upstream.stats import Stats

TIMEOUT_FAULT_S = 30.0
TRICKLE_S = 600  # how long a trickling body goes on, a byte a second, if the client stays
MALFORMED_JSON = (b'{"id": "chatcmpl-', "application/json")
MALFORMED_WAV = (b"RIFF\x24\x08\x00\x00WAVEfmt ", "audio/wav")


async def trickle(request: web.Request, body: bytes) -> web.StreamResponse:
    """A 200 whose body comes one byte a second, the bytes of ``body`` over and over, until the client leaves."""
    response = web.StreamResponse(status=200, headers={"content-type": "application/json"})
    await response.prepare(request)
    for index in range(TRICKLE_S):
        await response.write(body[index % len(body): index % len(body) + 1])
        await asyncio.sleep(1.0)
    return response


class Service:
    """The state every route shares (config, stats, key buckets, the seeded draws) and the steps they all take."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.buckets = KeyBuckets(config.rpm, config.tpm)
        self._keys = frozenset(config.api_keys)
        self._rng = random.Random(config.seed)

    def endpoint(self, handler: Handler) -> Endpoint:
        """Answers ApiError in OpenAI's shape and puts the request id and rate-limit headers on every answer."""

        async def endpoint(request: web.Request) -> web.StreamResponse:
            exchange = Exchange(request, "req_" + os.urandom(16).hex())
            try:
                response = await handler(exchange)
            except ApiError as error:
                self.stats.refused(exchange.key, exchange.model, error.status)
                response = error.response()
            if not response.prepared:
                response.headers.update(self.headers(exchange))
            return response

        return endpoint

    def headers(self, exchange: Exchange) -> dict[str, str]:
        headers = self.buckets.headers(exchange.key)
        headers["x-request-id"] = exchange.request_id
        return headers

    def authenticate(self, exchange: Exchange) -> str:
        """The request's bearer key, if this server accepts it; else OpenAI's 401."""
        scheme, _, key = exchange.request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code="invalid_api_key",
            )
        if self._keys and key not in self._keys:
            raise ApiError(401, f"Incorrect API key provided: {key_fingerprint(key)}.", code="invalid_api_key")
        exchange.key = key
        return key

    def admit(self, key: str, model: str, tokens: int | None) -> None:
        """Take one request (and ``tokens``) from the key's buckets, or refuse with OpenAI's 429."""
        self.buckets.admit(key, model, tokens)

    def draw(self, share: float) -> bool:
        """True for ``share`` of the calls, drawn in arrival order from ``--seed`` (so a run is reproducible)."""
        return bool(share) and self._rng.random() < share

    def latency_s(self, exchange: Exchange) -> float:
        raw = exchange.request.headers.get("X-Upstream-Latency-Ms")
        if raw is None:
            latency_ms = self.config.profile(exchange.model).latency_ms
            return (self.config.latency_ms if latency_ms is None else latency_ms) / 1000
        try:
            ms = float(raw)
        except ValueError:
            ms = -1.0
        if not 0 <= ms <= 600_000:
            raise bad_request(f"X-Upstream-Latency-Ms must be milliseconds from 0 to 600000 (got {raw!r}).")
        return ms / 1000

    async def injected_failure(
        self, exchange: Exchange, latency_s: float, malformed: tuple[bytes, str]
    ) -> web.StreamResponse | None:
        """An injected fault or a random server error, decided before any capacity is taken; None if neither."""
        fault = exchange.request.headers.get("X-Upstream-Fault", self.config.fault)
        if fault is None:
            if self.draw(self.config.error_rate):
                await sleep(latency_s)
                raise server_error(500)
            return None
        fault = fault.strip().lower()
        if fault not in FAULTS:
            raise bad_request(f"X-Upstream-Fault must be one of {', '.join(FAULTS)} (got {fault!r}).")
        if fault == "429":
            limit = self.config.rpm
            raise rate_limited(exchange.model or "", "requests", limit, limit, 1, 1.0)
        if fault == "timeout":
            await asyncio.sleep(TIMEOUT_FAULT_S)
            return None
        if fault == "disconnect":
            if exchange.request.transport is not None:
                exchange.request.transport.close()
            return web.Response()
        if fault == "trickle":
            return await trickle(exchange.request, malformed[0])
        await sleep(latency_s)
        if fault == "malformed":
            body, content_type = malformed
            return web.Response(body=body, content_type=content_type)
        raise server_error(int(fault))

    def usage_fault(self, exchange: Exchange) -> str | None:
        """The kind of wrong usage this answer gets: X-Upstream-Usage, else --wrong-usage, else None."""
        raw = exchange.request.headers.get("X-Upstream-Usage")
        if raw is None:
            return self.config.wrong_usage
        kind = raw.strip().lower()
        if kind not in USAGE_FAULTS:
            raise bad_request(f"X-Upstream-Usage must be one of {', '.join(USAGE_FAULTS)} (got {raw!r}).")
        return kind
