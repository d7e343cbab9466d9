"""The transport every OpenAI-compatible call goes through: a lean HTTP/1.1 client for whole answers, aiohttp for
the rest.

``post`` (the online call: POST JSON, read the whole answer) goes through ``http1.Http1Client``: one write per
request on a kept-alive connection and httptools parsing the answer, without httpx's objects on either side (a
``Reply``: status, headers, body). It never resends a POST by itself (the gateway's retries decide), and a gzip or
deflate body comes back decoded. ``http1.py`` states what it pools and what a failure does to a connection.

``handle_async_request`` keeps httpx's Request/Response API on one aiohttp session, for the callers that need
httpx's objects and for streamed answers (a request that accepts ``text/event-stream``): a plain answer is read
whole, a stream is handed over as it comes. Bodies are handed over as sent (aiohttp asks for gzip and deflate but
does not decode them); httpx decodes them. aiohttp's errors become httpx's, so callers see one family, the same
classes the lean client raises.

Neither side uses proxies from the environment (the aiohttp session does not trust it; the lean client connects
straight to the host).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import aiohttp
import httpx

from contentmill.providers.http1 import Http1Client, Reply


class WholeAnswer(Protocol):
    """What callers read of an answer whose body has been read: an ``httpx.Response`` or a ``Reply``."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...


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


class ApiTransport(httpx.AsyncBaseTransport):
    """``post`` on the lean HTTP/1.1 client; httpx's ``handle_async_request`` (and streams) over one aiohttp
    session, created on first use in the running event loop. Each side keeps its own connections."""

    def __init__(self, max_connections: int = 256, keepalive_s: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None
        self._http1 = Http1Client(max_connections, keepalive_s)

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
        """POST ``body`` once and read the whole answer (decoded if compressed); errors are httpx's, as from
        ``handle_async_request``. ``timeouts`` is ``httpx.Timeout.as_dict()``: connect, read, write, pool."""
        return await self._http1.post(url, body, headers, timeouts)

    async def aclose(self) -> None:
        await self._http1.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None
