"""A lean httpx transport on aiohttp, for API calls made by the thousand.

httpx's own transport is CPU-bound at a few hundred calls a second with many concurrent calls; aiohttp's
connection handling is several times faster. This transport keeps httpx's Request/Response API on top of it:
a plain answer is read whole (one buffer, no per-chunk wrapping), and a request that accepts
``text/event-stream`` gets a streamed body. Bodies are handed over as sent; httpx decodes them.
aiohttp's errors become httpx's, so callers see one family.

``post`` is the same exchange without httpx's objects on either side (a ``Reply``: status, headers, body): for
a whole JSON answer they cost about a third of the call's CPU (docs/benchmarks.md, "Server").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpx


class WholeAnswer(Protocol):
    """What callers read of an answer whose body has been read: an ``httpx.Response`` or a ``Reply``."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole answer from ``AiohttpTransport.post``; ``headers`` look names up in any case."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

EVENT_STREAM = "text/event-stream"


def _httpx_error(exc: BaseException, request: httpx.Request | None) -> httpx.TransportError:
    """The httpx exception that says the same thing as an aiohttp (or asyncio) one."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(str(exc) or "connect timed out", request=request)
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(str(exc) or "read timed out", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(exc), request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(str(exc) or "server disconnected", request=request)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.ReadError(str(exc), request=request)
    return httpx.NetworkError(str(exc) or type(exc).__name__, request=request)


def _client_timeout(timeouts: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
    """httpx's connect and read timeouts as aiohttp's (the whole exchange is bounded by the caller)."""
    return aiohttp.ClientTimeout(total=None, sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read"))


class _StreamedBody(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _httpx_error(exc, self._request) from exc

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx transport over one aiohttp session, created on first use in the running event loop."""

    def __init__(self, max_connections: int = 256, keepalive_s: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=self._keepalive_s)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = _client_timeout(request.extensions.get("timeout", {}))
        # Raw header pairs convert far faster than httpx.Headers' case-insensitive lookups.
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers.raw}
        streaming = EVENT_STREAM in headers.get("accept", headers.get("Accept", ""))
        try:
            response = await self._get_session().request(
                request.method, str(request.url), headers=headers, data=request.content or None,
                allow_redirects=False, timeout=timeout,
            )
            if streaming:
                return httpx.Response(response.status, headers=response.raw_headers,
                                      stream=_StreamedBody(response, request), request=request)
            async with response:
                body = await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _httpx_error(exc, request) from exc
        return httpx.Response(response.status, headers=response.raw_headers, content=body, request=request)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str],
                   timeouts: Mapping[str, float | None]) -> Reply:
        """POST ``body`` and read the whole answer; errors are httpx's, as from ``handle_async_request``."""
        timeout = _client_timeout(timeouts)
        try:
            async with self._get_session().post(url, data=body, headers=headers, allow_redirects=False,
                                                timeout=timeout) as response:
                return Reply(response.status, response.headers, await response.read())
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _httpx_error(exc, None) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
