"""Any OpenAI-compatible API (OpenAI, DeepSeek, Qwen, vLLM, Ollama, llama.cpp server): its text, speech,
embedding and image models, each over one ``OpenAICompatClient`` (openai_client.py: the HTTP, auth and errors)."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from contentmill.audio import wav_info
from contentmill.errors import (
    MalformedResponse,
)
from contentmill.metering import ReportedUsage, Usage, count_message_tokens, count_tokens
from contentmill.providers.base import EmbeddingResult, ImageResult, SpeechResult, TextChunk, TextResult
from contentmill.providers.openai_client import (
    OpenAICompatClient,
    parse_json,
    reported_usage,
    text_id,
    unusable,
)
from contentmill.requests import EmbeddingRequest, ImageRequest, SpeechRequest, TextRequest


class OpenAICompatTextModel:
    """Chat completions (plain and streamed) on an OpenAI-compatible API."""

    def __init__(self, name: str, client: OpenAICompatClient, *, encoding: str = "o200k_base",
                 exact_tokenizer: bool = True) -> None:
        self.name = name
        self.model_id = name.split(":", 1)[1]
        self.client = client
        self.encoding = encoding
        self.exact_tokenizer = exact_tokenizer

    def count_tokens(self, text: str) -> int:
        return count_tokens(text, self.encoding)

    def _payload(self, request: TextRequest, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model_id,
            "messages": request.as_messages(),
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.stop:
            payload["stop"] = list(request.stop)
        if request.seed is not None:
            payload["seed"] = request.seed
        if request.response_format == "json":
            payload["response_format"] = {"type": "json_object"}
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return payload

    def _estimate(self, request: TextRequest, text: str) -> Usage:
        """Our own count, for servers that report no usage; flagged as an estimate."""
        return Usage(
            input_tokens=count_message_tokens(request.as_messages(), self.encoding),
            output_tokens=self.count_tokens(text),
            estimated=True,
        )

    async def complete(self, request: TextRequest) -> TextResult:
        started = time.perf_counter()
        response = await self.client.post("/chat/completions", self._payload(request, False), self.name)
        data = parse_json(response, self.client.provider, self.name)
        reported = reported_usage(data.get("usage"))
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason") or "stop"
        except (KeyError, IndexError, TypeError, AttributeError):
            raise unusable("it has no choices[0].message", reported, self.client.provider, self.name,
                            response.headers.get("x-request-id")) from None
        usage = reported.usage if reported is not None and reported.usage is not None else None
        request_id = response.headers.get("x-request-id") or text_id(data.get("id"))
        return TextResult(text, self.name, usage or self._estimate(request, text), finish, request_id,
                          time.perf_counter() - started, reported)

    async def stream(self, request: TextRequest) -> AsyncIterator[TextChunk]:
        parts: list[str] = []
        reported: ReportedUsage | None = None
        finish: str | None = None
        request_id: str | None = None
        async for rid, line in self.client.stream_lines("/chat/completions", self._payload(request, True),
                                                         self.name):
            request_id = rid or request_id
            if not line.startswith("data:"):
                continue
            body = line[5:].strip()
            if body == "[DONE]":
                break
            try:
                chunk = orjson.loads(body)
            except ValueError:
                raise MalformedResponse("a streamed chunk is not JSON", provider=self.client.provider,
                                        model=self.name, request_id=request_id) from None
            if not isinstance(chunk, dict):
                raise MalformedResponse("a streamed chunk is not a JSON object", provider=self.client.provider,
                                        model=self.name, request_id=request_id)
            reported = reported_usage(chunk.get("usage")) or reported
            for choice in chunk.get("choices") or ():
                delta = (choice.get("delta") or {}).get("content") or ""
                finish = choice.get("finish_reason") or finish
                if delta:
                    parts.append(delta)
                    yield TextChunk(delta=delta, request_id=request_id)
        usage = reported.usage if reported is not None else None
        yield TextChunk(
            delta="",
            usage=usage or self._estimate(request, "".join(parts)),
            finish_reason=finish or "stop",
            request_id=request_id,
            reported=reported,
        )

    async def aclose(self) -> None:
        await self.client.aclose()


class OpenAICompatSpeechModel:
    """``/audio/speech`` on an OpenAI-compatible API, asking for WAV so the duration can be measured."""

    def __init__(self, name: str, client: OpenAICompatClient) -> None:
        self.name = name
        self.model_id = name.split(":", 1)[1]
        self.client = client

    async def synthesize(self, request: SpeechRequest) -> SpeechResult:
        started = time.perf_counter()
        payload = {
            "model": self.model_id,
            "input": request.text,
            "voice": "alloy" if request.voice == "default" else request.voice,
            "response_format": "wav",
            "speed": request.speed,
        }
        response = await self.client.post("/audio/speech", payload, self.name)
        audio = response.content
        try:
            info = wav_info(audio)
        except Exception:
            raise MalformedResponse("the answer is not a WAV file", provider=self.client.provider,
                                    model=self.name, request_id=response.headers.get("x-request-id")) from None
        usage = Usage(characters=len(request.text), seconds=info.duration_s)
        return SpeechResult(audio, self.name, usage, info.sample_rate, info.duration_s,
                            response.headers.get("x-request-id"), time.perf_counter() - started)

    async def aclose(self) -> None:
        await self.client.aclose()


class OpenAICompatEmbeddingModel:
    """``/embeddings`` on an OpenAI-compatible API, as floats."""

    def __init__(self, name: str, client: OpenAICompatClient, *, encoding: str = "cl100k_base") -> None:
        self.name = name
        self.model_id = name.split(":", 1)[1]
        self.client = client
        self.encoding = encoding

    def count_tokens(self, text: str) -> int:
        return count_tokens(text, self.encoding)

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        started = time.perf_counter()
        payload: dict[str, Any] = {"model": self.model_id, "input": list(request.inputs), "encoding_format": "float"}
        if request.dimensions is not None:
            payload["dimensions"] = request.dimensions
        response = await self.client.post("/embeddings", payload, self.name)
        data = parse_json(response, self.client.provider, self.name)
        request_id = response.headers.get("x-request-id")
        reported = reported_usage(data.get("usage"), output=False)
        try:
            rows = sorted(data["data"], key=lambda row: int(row["index"]))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (KeyError, TypeError, ValueError):
            raise unusable("it has no data[].embedding", reported, self.client.provider, self.name,
                            request_id) from None
        if len(vectors) != len(request.inputs):
            raise unusable(f"it has {len(vectors)} embeddings for {len(request.inputs)} inputs", reported,
                            self.client.provider, self.name, request_id)
        usage = reported.usage if reported is not None else None
        usage = usage or Usage(input_tokens=sum(self.count_tokens(t) for t in request.inputs), estimated=True)
        return EmbeddingResult(vectors, self.name, usage, request_id, time.perf_counter() - started, reported)

    async def aclose(self) -> None:
        await self.client.aclose()


class OpenAICompatImageModel:
    """``/images/generations`` on an OpenAI-compatible API, the images sent back inline as base64 (b64_json).

    gpt-image models always answer in base64 and refuse ``response_format``; DALL-E answers with URLs unless
    asked for ``b64_json``, so it is asked. Billed per image the answer holds.
    """

    def __init__(self, name: str, client: OpenAICompatClient) -> None:
        self.name = name
        self.model_id = name.split(":", 1)[1]
        self.client = client

    def _payload(self, request: ImageRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model_id, "prompt": request.prompt, "n": request.n,
                                   "size": request.size}
        if request.quality is not None:
            payload["quality"] = request.quality
        if not self.model_id.startswith("gpt-image"):
            payload["response_format"] = "b64_json"
        return payload

    async def imagine(self, request: ImageRequest) -> ImageResult:
        started = time.perf_counter()
        response = await self.client.post("/images/generations", self._payload(request), self.name)
        data = parse_json(response, self.client.provider, self.name)
        request_id = response.headers.get("x-request-id")
        rows = data.get("data")
        images: list[bytes] = []
        revised: str | None = None
        for row in rows if isinstance(rows, list) else ():
            encoded = row.get("b64_json") if isinstance(row, dict) else None
            if not isinstance(encoded, str):
                continue
            try:
                images.append(base64.b64decode(encoded, validate=True))
            except (binascii.Error, ValueError):
                continue
            revised = revised or text_id(row.get("revised_prompt"))
        if not images:
            raise MalformedResponse("the answer has no data[].b64_json image", provider=self.client.provider,
                                    model=self.name, request_id=request_id)
        images = images[: request.n]  # never bill more images than were asked for
        return ImageResult(tuple(images), self.name, Usage(images=len(images)), request_id,
                           time.perf_counter() - started, revised)

    async def aclose(self) -> None:
        await self.client.aclose()
