"""The fake upstream's pictures: OpenAI's image generations, so videos with visuals cost nothing in tests.

``POST /v1/images/generations`` answers each prompt with PNGs drawn by ``providers.fake.fake_png`` (the same
prompt, the same picture; other prompts, other colours and shapes), in base64 (``b64_json``) as gpt-image
models always answer. As OpenAI does, a gpt-image model refuses ``response_format``; a DALL-E model asked for
``url`` is told this server answers ``b64_json`` only. Faults, latency and the key's request bucket apply as on
the other endpoints.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from aiohttp import web

from contentmill.providers.base import IMAGE_SIZE
from contentmill.providers.fake import fake_png
from contentmill.testing.upstream import (
    _MALFORMED_JSON,
    Exchange,
    UpstreamServer,
    _bad_request,
    _json_body,
    _optional_int,
    _required_str,
    _sleep,
)

IMAGE_MODELS = ("gpt-image-1", "dall-e-3", "dall-e-2")
MAX_SIDE = 4096
PROMPT_TOKENS_PER_CHAR = 0.25  # gpt-image-1 reports token usage too; a rough count is enough for a fake


@lru_cache(maxsize=64)
def _png(prompt: str, width: int, height: int) -> bytes:
    return fake_png(prompt, width, height)


def _size(body: dict[str, Any]) -> tuple[int, int]:
    size = body.get("size", "1024x1024")
    if size == "auto":
        return 1024, 1024
    if not isinstance(size, str) or not IMAGE_SIZE.match(size):
        raise _bad_request(f"Invalid 'size': expected WIDTHxHEIGHT such as 1024x1536 (got {size!r}).", "size")
    width, _, height = size.partition("x")
    if max(int(width), int(height)) > MAX_SIDE:
        raise _bad_request(f"Invalid 'size': at most {MAX_SIDE} pixels a side (got {size}).", "size")
    return int(width), int(height)


class VisualsApi:
    """The image routes of one fake upstream, sharing its keys, limits, faults and stats."""

    def __init__(self, server: UpstreamServer) -> None:
        self.server = server

    def routes(self, app: web.Application, wrap: Callable[[Callable[[Exchange], Any]], Any]) -> None:
        app.router.add_post("/v1/images/generations", wrap(self._images))

    async def _images(self, exchange: Exchange) -> web.StreamResponse:
        server = self.server
        key = server._authenticate(exchange)
        body = dict(await _json_body(exchange.request))
        model, prompt = _required_str(body, "model"), _required_str(body, "prompt")
        exchange.model = model
        n = _optional_int(body, "n", 1) or 1
        if n > 10:
            raise _bad_request(f"Invalid 'n': at most 10 images a request (got {n}).", "n")
        width, height = _size(body)
        fmt = body.get("response_format")
        if model.startswith("gpt-image") and fmt is not None:
            raise _bad_request("Unknown parameter: 'response_format'.", "response_format", "unknown_parameter")
        if fmt not in (None, "b64_json"):
            raise _bad_request(f"Invalid 'response_format': this upstream answers 'b64_json' only (got {fmt!r}).",
                               "response_format")
        latency_s = server._latency_s(exchange)
        early = await server._injected_failure(exchange, latency_s, _MALFORMED_JSON)
        if early is not None:
            return early
        server._admit(key, model, None)
        prompts = [prompt if i == 0 else f"{prompt}#{i}" for i in range(n)]
        images = await asyncio.gather(*(asyncio.to_thread(_png, p, width, height) for p in prompts))
        await _sleep(latency_s)
        server.stats.served(key, model)
        answer: dict[str, Any] = {
            "created": int(time.time()),
            "data": [{"b64_json": base64.b64encode(image).decode()} for image in images],
        }
        if model.startswith("gpt-image"):
            tokens = max(1, round(len(prompt) * PROMPT_TOKENS_PER_CHAR))
            answer["usage"] = {"input_tokens": tokens, "output_tokens": 1056 * n, "total_tokens": tokens + 1056 * n,
                               "input_tokens_details": {"text_tokens": tokens, "image_tokens": 0}}
        return web.json_response(answer)
