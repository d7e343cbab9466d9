"""The fake upstream's online endpoints: chat completions (plain, JSON mode, streamed as Server-Sent Events),
speech (a WAV tone as long as the text takes to say), embeddings (unit vectors drawn from each text's digest)
and the model list.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from aiohttp import web

from contentmill.audio import CHARS_PER_SECOND, tone
from contentmill.metering import count_tokens
from contentmill.testing.packed import packed_items
from contentmill.testing.upstream.chat import (
    Answer,
    ChatCall,
    chunk_bodies,
    completion_body,
    delta_text,
    parse_chat,
    wrong_usage,
)
from contentmill.testing.upstream.common import Exchange, Wrap, dumps, json_body, optional_int, required_str, sleep
from contentmill.testing.upstream.errors import bad_request
from contentmill.testing.upstream.limits import rate_limited
from contentmill.testing.upstream.service import MALFORMED_JSON, MALFORMED_WAV, Service

EMBEDDING_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072}
SPEECH_SAMPLE_RATE = 24_000  # OpenAI's TTS sample rate
SPEECH_MAX_CHARS = 4096  # OpenAI's limit on a speech request's input
_DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class SpeechCall:
    model: str
    text: str
    speed: float

    @property
    def seconds(self) -> float:
        return max(0.2, len(self.text) / CHARS_PER_SECOND / self.speed)


def parse_speech(body: Mapping[str, Any]) -> SpeechCall:
    """Check a speech body the way OpenAI does; only WAV is produced, and saying otherwise is a 400."""
    model, text = required_str(body, "model"), required_str(body, "input")
    required_str(body, "voice")
    if len(text) > SPEECH_MAX_CHARS:
        raise bad_request(f"Invalid 'input': string too long, at most {SPEECH_MAX_CHARS} characters.", "input")
    if body.get("response_format", "wav") != "wav":
        raise bad_request("Invalid 'response_format': this upstream produces 'wav' only.", "response_format")
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        raise bad_request(f"Invalid 'speed': expected a number from 0.25 to 4.0 (got {speed!r}).", "speed")
    return SpeechCall(model, text, float(speed))


@lru_cache(maxsize=32)
def _tone(seconds: float) -> bytes:
    return tone(seconds, SPEECH_SAMPLE_RATE)


def fake_vector(text: str, dimensions: int) -> list[float]:
    """A unit vector drawn from the text's digest: the same text always gets the same vector."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    raw = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]


class OnlineApi:
    """The online routes of one fake upstream: each request authenticated, faulted, admitted and counted."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def routes(self, app: web.Application, wrap: Wrap) -> None:
        app.router.add_post("/v1/chat/completions", wrap(self._chat))
        app.router.add_post("/v1/audio/speech", wrap(self._speech))
        app.router.add_post("/v1/embeddings", wrap(self._embeddings))
        app.router.add_get("/v1/models", wrap(self._models))

    async def _chat(self, exchange: Exchange) -> web.StreamResponse:
        service, config = self.service, self.service.config
        key = service.authenticate(exchange)
        call = replace(parse_chat(await json_body(exchange.request)), corrupt=frozenset(config.corrupt_items))
        exchange.model = call.model
        call = replace(call, verbosity=config.profile(call.model).tokens_factor)
        usage_fault = service.usage_fault(exchange)
        latency_s = service.latency_s(exchange)
        early = await service.injected_failure(exchange, latency_s, MALFORMED_JSON)
        if early is not None:
            return early
        if service.draw(config.rate_429):
            raise rate_limited(call.model, "requests", config.rpm, config.rpm, 1, 1.0)
        prompt_tokens = call.prompt_tokens()
        service.admit(key, call.model, prompt_tokens + call.max_tokens)
        answer = call.answer(prompt_tokens)
        if call.stream:
            return await self._stream(exchange, key, call, answer, latency_s, usage_fault)
        await sleep(latency_s)
        service.stats.served(key, call.model, answer.prompt_tokens, answer.completion_tokens)
        self._count_items(call)
        return web.json_response(completion_body(call, answer, usage_fault), dumps=dumps)

    async def _stream(
        self, exchange: Exchange, key: str, call: ChatCall, answer: Answer, latency_s: float,
        usage_fault: str | None = None,
    ) -> web.StreamResponse:
        """Server-Sent Events as OpenAI sends them, the latency spread over the chunks (one write without it)."""
        chunks = chunk_bodies(call, answer, usage_fault)
        events = [b"data: " + dumps(chunk).encode() + b"\n\n" for chunk in chunks]
        tokens = [count_tokens(delta_text(chunk), call.encoding) for chunk in chunks]
        pause = latency_s / len(events)
        service, stats = self.service, self.service.stats
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        response.headers.update(service.headers(exchange))
        stats.served(key, call.model, answer.prompt_tokens, answer.completion_tokens)
        written = 0
        try:
            await response.prepare(exchange.request)
            cut = service.config.cut_streams_after
            if cut is not None and cut < len(events):  # a connection that drops mid-answer
                for event, count in zip(events[:cut], tokens[:cut], strict=True):
                    await response.write(event)
                    written += count
                stats.streamed(key, call.model, written, cut=True)
                if exchange.request.transport is not None:
                    exchange.request.transport.close()
                return response
            if pause > 0:
                for event, count in zip(events, tokens, strict=True):
                    await asyncio.sleep(pause)
                    await response.write(event)
                    written += count
                await response.write(_DONE)
            else:
                await response.write(b"".join(events) + _DONE)
                written = sum(tokens)
            await response.write_eof()
        except ConnectionError:  # the client went away mid-stream: nothing is left to answer
            stats.streamed(key, call.model, written, cut=True)
            return response
        except asyncio.CancelledError:
            stats.streamed(key, call.model, written, cut=True)
            raise
        stats.streamed(key, call.model, written, cut=False)
        return response

    async def _speech(self, exchange: Exchange) -> web.StreamResponse:
        service = self.service
        key = service.authenticate(exchange)
        call = parse_speech(await json_body(exchange.request))
        exchange.model = call.model
        latency_s = service.latency_s(exchange)
        early = await service.injected_failure(exchange, latency_s, MALFORMED_WAV)
        if early is not None:
            return early
        service.admit(key, call.model, None)
        audio = await asyncio.to_thread(_tone, round(call.seconds, 4))
        await sleep(latency_s)
        service.stats.served(key, call.model, characters=len(call.text))
        return web.Response(body=audio, content_type="audio/wav")

    async def _embeddings(self, exchange: Exchange) -> web.StreamResponse:
        service = self.service
        key = service.authenticate(exchange)
        body = await json_body(exchange.request)
        model = required_str(body, "model")
        exchange.model = model
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            raise bad_request("'input' must be a non-empty string or a list of them.", "input")
        dimensions = optional_int(body, "dimensions", 1) or EMBEDDING_DIMENSIONS.get(model, 1536)
        usage_fault = service.usage_fault(exchange)
        latency_s = service.latency_s(exchange)
        early = await service.injected_failure(exchange, latency_s, MALFORMED_JSON)
        if early is not None:
            return early
        tokens = sum(count_tokens(t, "cl100k_base") for t in texts)
        service.admit(key, model, tokens)
        await sleep(latency_s)
        service.stats.served(key, model, tokens)
        data = [{"object": "embedding", "index": i, "embedding": fake_vector(t, dimensions)}
                for i, t in enumerate(texts)] if usage_fault != "empty-choices" else []
        usage = wrong_usage({"prompt_tokens": tokens, "total_tokens": tokens}, usage_fault)
        return web.json_response({"object": "list", "data": data, "model": model, "usage": usage}, dumps=dumps)

    async def _models(self, exchange: Exchange) -> web.StreamResponse:
        self.service.authenticate(exchange)
        data = [
            {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "system"}
            for name in self.service.config.models
        ]
        return web.json_response({"object": "list", "data": data})

    def _count_items(self, call: ChatCall) -> None:
        """Count the items a packed request was answered for, in total and per id (``items``, ``item_ids``)."""
        items = packed_items(call.messages[-1]["content"]) or ()
        self.service.stats.answered_items(str(item["id"]) for item in items)
