"""The HTTP side of any OpenAI-compatible API: base URL, auth, its HTTP client, and vendor errors and usage.

Requests go straight to ``providers/transport.py`` by default: an API client needs none of httpx.Client's cookie
jar, redirect and auth machinery, which costs more per call than the HTTP exchange itself. There a whole-answer
POST (``post``) goes through the lean HTTP/1.1 client of ``providers/http1.py``, which never resends a request by
itself, so a retry is always the gateway's, with its own ledger row; a streamed answer (``stream_lines``) goes
through aiohttp under httpx's Request/Response API. Neither uses proxies from the environment. Pass
``http_client=`` to use your own ``httpx.AsyncClient`` for both instead (tests may pass one on
``httpx.MockTransport``). Vendor errors map into ``contentmill.errors`` with status, request id and Retry-After
kept; a vendor's usage block is read as it was sent (``reported_usage``), to be checked before it is billed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

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
from contentmill.metering import ReportedUsage, Usage, read_count, usage_figures
from contentmill.providers.transport import EVENT_STREAM, ApiTransport, WholeAnswer

USER_AGENT = "contentmill/0.1"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from retry-after-ms (OpenAI) or Retry-After (seconds; HTTP dates are ignored)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw:
            try:
                return max(0.0, float(raw) * scale)
            except ValueError:
                continue
    return None


def error_message(body: bytes) -> str:
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


STATUS_ERRORS: dict[int, type[ProviderError]] = {
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
        self._transport = ApiTransport() if http_client is None else None
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
        cls = STATUS_ERRORS.get(status, ProviderUnavailable if status >= 500 else BadRequest)
        return cls(
            error_message(body),
            provider=self.provider,
            model=model,
            status=status,
            request_id=response.headers.get("x-request-id"),
            retry_after=retry_after(response.headers),
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


def parse_json(response: WholeAnswer, provider: str, model: str) -> dict[str, Any]:
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


def reported_usage(raw: Any, *, output: bool = True) -> ReportedUsage | None:
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


def unusable(problem: str, reported: ReportedUsage | None, provider: str, model: str,
              request_id: str | None) -> MalformedResponse:
    """An answer whose content cannot be used: when it reports usage the vendor bills it, so it is billed and not
    retried (UnusableAnswer); without usage it may be retried like any unreadable answer."""
    if reported is None:
        return MalformedResponse(f"the vendor's answer cannot be used: {problem}", provider=provider, model=model,
                                 request_id=request_id)
    return UnusableAnswer(f"the vendor's answer cannot be used: {problem}; the usage it reports is billed and the "
                          "call is not retried", reported, provider=provider, model=model, request_id=request_id)


def text_id(value: Any) -> str | None:
    return value if isinstance(value, str) else None
