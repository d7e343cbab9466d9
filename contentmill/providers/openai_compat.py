"""Any OpenAI-compatible API (OpenAI, DeepSeek, Qwen, vLLM, Ollama, llama.cpp server) over httpx.

The module owns base URL, auth and its HTTP client. By default requests go straight to a lean aiohttp-backed
httpx transport (``providers/transport.py``): an API client needs none of httpx.Client's cookie jar, redirect
and auth machinery, which costs more per call than the HTTP exchange itself. Pass ``http_client=`` to use your
own ``httpx.AsyncClient`` instead (tests may pass one on ``httpx.MockTransport``).
Vendor errors map into ``contentmill.errors`` with status, request id and Retry-After kept.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

from contentmill.audio import wav_info
from contentmill.errors import (
    AuthenticationError,
    BadRequest,
    MalformedResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    UnusableAnswer,
)
from contentmill.metering import ReportedUsage, Usage, count_message_tokens, count_tokens, read_count, usage_figures
from contentmill.providers.base import EmbeddingResult, ImageResult, SpeechResult, TextChunk, TextResult
from contentmill.providers.transport import EVENT_STREAM, AiohttpTransport, WholeAnswer
from contentmill.requests import EmbeddingRequest, ImageRequest, SpeechRequest, TextRequest

USER_AGENT = "contentmill/0.1"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from retry-after-ms (OpenAI) or Retry-After (seconds; HTTP dates are ignored)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw:
            try:
                return max(0.0, float(raw) * scale)
            except ValueError:
                continue
    return None


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
        error = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    except (ValueError, AttributeError):
        pass
    text = body.decode("utf-8", "replace").strip()
    return text[:300] or "no error message"


_STATUS_ERRORS: dict[int, type[ProviderError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: AuthenticationError,
    404: BadRequest,
    409: ProviderUnavailable,
    413: BadRequest,
    422: BadRequest,
    429: ProviderRateLimited,
}


class OpenAICompatClient:
    """The HTTP side shared by the text and speech models of one OpenAI-compatible provider."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        api_key: SecretStr | None,
        *,
        timeout: float = 60.0,
        http_client: httpx.AsyncClient | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._client = http_client
        self._transport = AiohttpTransport() if http_client is None else None
        self._timeout = timeout
        self._timeouts = httpx.Timeout(timeout).as_dict()
        headers = {"user-agent": USER_AGENT, "content-type": "application/json", **(extra_headers or {})}
        if api_key is not None:
            headers["authorization"] = f"Bearer {api_key.get_secret_value()}"
        secret = api_key.get_secret_value() if api_key is not None else ""
        fingerprint = hashlib.sha256(f"{self.base_url}\0{secret}".encode()).hexdigest()[:12]
        self.account = f"{provider}-{fingerprint}"
        self._plain_headers = headers
        self._headers = httpx.Headers(headers)
        self._stream_headers = httpx.Headers({**headers, "accept": EVENT_STREAM})
        self._urls: dict[str, httpx.URL] = {}

    def _request(self, path: str, payload: dict[str, Any], headers: httpx.Headers) -> httpx.Request:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self.base_url + path)
        return httpx.Request("POST", url, content=orjson.dumps(payload), headers=headers,
                             extensions={"timeout": self._timeouts})

    async def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        if self._transport is not None:
            return await self._transport.handle_async_request(request)
        assert self._client is not None
        return await self._client.send(request, stream=stream)

    def _error(self, response: WholeAnswer | httpx.Response, body: bytes, model: str) -> ProviderError:
        status = response.status_code
        cls = _STATUS_ERRORS.get(status, ProviderUnavailable if status >= 500 else BadRequest)
        return cls(
            _error_message(body),
            provider=self.provider,
            model=model,
            status=status,
            request_id=response.headers.get("x-request-id"),
            retry_after=_retry_after(response.headers),
        )

    def _transport_error(self, exc: httpx.HTTPError, model: str) -> ProviderError:
        if isinstance(exc, httpx.TimeoutException):
            return ProviderTimeout(f"no answer within {self._timeout:g} s", provider=self.provider, model=model)
        return ProviderUnavailable(f"cannot reach {self.base_url}: {exc!r}", provider=self.provider, model=model)

    async def post(self, path: str, payload: dict[str, Any], model: str) -> WholeAnswer:
        """POST JSON; returns a 2xx response with its body read, or raises a mapped ProviderError. The timeout
        bounds the whole exchange (connect, headers and body), so a body that trickles in ends at it too."""
        response: WholeAnswer
        try:
            async with asyncio.timeout(self._timeout):
                if self._transport is not None:
                    response = await self._transport.post(self.base_url + path, orjson.dumps(payload),
                                                          self._plain_headers, self._timeouts)
                else:
                    sent = await self._send(self._request(path, payload, self._headers))
                    await sent.aread()
                    response = sent
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, model) from exc
        except TimeoutError:
            raise ProviderTimeout(f"no whole answer within {self._timeout:g} s", provider=self.provider,
                                  model=model) from None
        if response.status_code >= 400:
            raise self._error(response, response.content, model)
        return response

    async def stream_lines(self, path: str, payload: dict[str, Any], model: str) -> AsyncIterator[tuple[str, str]]:
        """POST and yield ``(request_id, line)`` for each line of a streamed answer."""
        try:
            response = await self._send(self._request(path, payload, self._stream_headers), stream=True)
            try:
                if response.status_code >= 400:
                    raise self._error(response, await response.aread(), model)
                request_id = response.headers.get("x-request-id", "")
                async for line in response.aiter_lines():
                    yield request_id, line
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, model) from exc

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()


def _parse_json(response: WholeAnswer, provider: str, model: str) -> dict[str, Any]:
    try:
        data = orjson.loads(response.content)
    except ValueError:
        raise MalformedResponse(
            "the answer is not JSON", provider=provider, model=model, status=response.status_code,
            request_id=response.headers.get("x-request-id"),
        ) from None
    if not isinstance(data, dict):
        raise MalformedResponse("the answer is not a JSON object", provider=provider, model=model,
                                request_id=response.headers.get("x-request-id"))
    return data


def _usage(raw: Any, *, output: bool = True) -> ReportedUsage | None:
    """The vendor's usage block, None when it sent none. Its counts are read only when each is a non-negative
    integer; anything else (null, negative, text, fractions) is kept as sent with what is wrong, never guessed
    at, and never raised as if the caller's input were at fault. Embeddings report no output (``output``)."""
    if raw is None:
        return None
    figures = usage_figures(raw)
    if not isinstance(raw, dict):
        return ReportedUsage(figures, problem="the usage block is not a JSON object")
    counts = {}
    for name, required in (("prompt_tokens", True), ("completion_tokens", output)):
        counts[name], problem = read_count(raw, name, required=required)
        if problem is not None:
            return ReportedUsage(figures, problem=problem)
    details = raw.get("prompt_tokens_details")
    cached = 0
    if isinstance(details, dict) and details.get("cached_tokens") is not None:  # optional, often null
        cached, problem = read_count(details, "cached_tokens")
        if problem is not None:
            return ReportedUsage(figures, problem="prompt_tokens_details." + problem)
    usage = Usage(input_tokens=counts["prompt_tokens"], output_tokens=counts["completion_tokens"] if output else 0,
                  cached_input_tokens=cached)
    return ReportedUsage(figures, usage)


def _unusable(problem: str, reported: ReportedUsage | None, provider: str, model: str,
              request_id: str | None) -> MalformedResponse:
    """An answer whose content cannot be used: when it reports usage the vendor bills it, so it is billed and not
    retried (UnusableAnswer); without usage it may be retried like any unreadable answer."""
    if reported is None:
        return MalformedResponse(f"the vendor's answer cannot be used: {problem}", provider=provider, model=model,
                                 request_id=request_id)
    return UnusableAnswer(f"the vendor's answer cannot be used: {problem}; the usage it reports is billed and the "
                          "call is not retried", reported, provider=provider, model=model, request_id=request_id)


def _text_id(value: Any) -> str | None:
    return value if isinstance(value, str) else None


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
        data = _parse_json(response, self.client.provider, self.name)
        reported = _usage(data.get("usage"))
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason") or "stop"
        except (KeyError, IndexError, TypeError, AttributeError):
            raise _unusable("it has no choices[0].message", reported, self.client.provider, self.name,
                            response.headers.get("x-request-id")) from None
        usage = reported.usage if reported is not None and reported.usage is not None else None
        request_id = response.headers.get("x-request-id") or _text_id(data.get("id"))
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
            reported = _usage(chunk.get("usage")) or reported
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
        data = _parse_json(response, self.client.provider, self.name)
        request_id = response.headers.get("x-request-id")
        reported = _usage(data.get("usage"), output=False)
        try:
            rows = sorted(data["data"], key=lambda row: int(row["index"]))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (KeyError, TypeError, ValueError):
            raise _unusable("it has no data[].embedding", reported, self.client.provider, self.name,
                            request_id) from None
        if len(vectors) != len(request.inputs):
            raise _unusable(f"it has {len(vectors)} embeddings for {len(request.inputs)} inputs", reported,
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
        data = _parse_json(response, self.client.provider, self.name)
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
            revised = revised or _text_id(row.get("revised_prompt"))
        if not images:
            raise MalformedResponse("the answer has no data[].b64_json image", provider=self.client.provider,
                                    model=self.name, request_id=request_id)
        images = images[: request.n]  # never bill more images than were asked for
        return ImageResult(tuple(images), self.name, Usage(images=len(images)), request_id,
                           time.perf_counter() - started, revised)

    async def aclose(self) -> None:
        await self.client.aclose()
