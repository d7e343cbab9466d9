"""A lean HTTP/1.1 client for one job: POST a body and read the whole answer, on kept-alive connections.

aiohttp spends some 200 Python-level calls on such an exchange (a write task per request, the connector's
lookups, layers of response parsing); here a request is one ``transport.write`` on an ``asyncio.Protocol`` and
httptools (llhttp, in C) parses the answer, so the exchange costs a few dozen. Bodies are framed by
Content-Length, chunked, or end at close; a gzip or deflate body (asked for with ``accept-encoding``) is decoded,
so a vendor that compresses still gives JSON. https goes through ``ssl.create_default_context()``. Connections
go straight to the host: proxies in the environment are not used.

What holds:

- Nothing is ever sent twice. A POST goes out once, on one connection; when that fails (refused, reset, closed
  before a whole answer, a stall past the timeout, an answer that is not HTTP) the error is raised and nothing is
  resent, not even when a kept-alive connection turns out to have been closed by the peer as the request went
  out: the upstream may have received it, a model call is paid for, and the gateway's own retries, which write a
  ledger row per attempt, decide whether to try again.
- A failure ends the connection. An error, a timeout or a cancelled request (the caller bounds the whole exchange
  with ``asyncio.timeout``) aborts it; it never goes back to the pool, so no later request reads a stale answer.
- What is pooled: per (scheme, host, port), connections that read a whole answer that did not ask to close
  (HTTP/1.1 without ``Connection: close``), whose peer has not closed them (no EOF seen, the transport not
  closing), idle for less than ``keepalive_s``; at most ``max_connections`` open per pool (a request waits for
  one up to the ``pool`` timeout). Each connection has one timer that ends a stalled answer (``read``: the gap
  between bytes; ``write`` while the request is still being sent) and closes it once idle too long: no task and
  no timer is made per request.
- Errors are httpx's (ConnectError, ConnectTimeout, ReadTimeout, WriteTimeout, PoolTimeout, ReadError,
  RemoteProtocolError, DecodingError), the classes ``transport.py`` maps aiohttp's to. Their messages name
  host:port and never a header, so an Authorization header cannot reach an error, a log or a repr.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import TypeVar, cast, overload
from urllib.parse import urlsplit

import httptools
import httpx

T = TypeVar("T")
Timeouts = Mapping[str, float | None]

DEFAULT_PORTS = {"http": 80, "https": 443}
ACCEPT_ENCODING = b"accept-encoding: gzip, deflate\r\n"
# Fields the client writes itself, from the URL and the body; a caller's are left out.
OWN_FIELDS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
FORBIDDEN_IN_VALUE = re.compile(r"[\r\n\0]")
MAX_ROUTES = 512


class Headers(Mapping[str, str]):
    """An answer's header fields; names are looked up in any case, a repeated field reads as its values joined."""

    __slots__ = ("_fields",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        fields: dict[str, str] = {}
        for name, value in raw:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            fields[key] = f"{fields[key]}, {text}" if key in fields else text
        self._fields = fields

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str | T) -> str | T: ...
    def get(self, name: str, default: object = None) -> object:
        return self._fields.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole answer: status, header fields (looked up in any case), and the body, decoded if it was compressed."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


def decode_body(body: bytes, encoding: str, where: str) -> bytes:
    """The body without its gzip/deflate content codings (last applied, first undone); others are left as sent."""
    for coding in reversed(encoding.lower().split(",")):
        coding = coding.strip()
        try:
            if coding in ("gzip", "x-gzip"):
                body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
            elif coding == "deflate":  # zlib-wrapped as the RFC says, or raw deflate as some servers send
                try:
                    body = zlib.decompress(body)
                except zlib.error:
                    body = zlib.decompress(body, -zlib.MAX_WBITS)
        except zlib.error as exc:
            raise httpx.DecodingError(f"{where} sent a {coding} body that does not decode: {exc}") from None
    return body


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: at most one request in flight; httptools calls the ``on_*`` methods as it parses."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Reply] | None = None
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.on_body = self.chunks.append  # read by the parser once, below: a C call per piece of body
        self.parser = httptools.HttpResponseParser(self)
        self.head_done = False
        self.keep = False  # the answer just read leaves the connection fit for another request
        self.closed = False
        self.counted = False  # holds one of the pool's max_connections
        self.activity = time.monotonic()  # the last byte received (or request sent): timeouts count from it
        self.timeouts: Timeouts | None = None
        self.read_s: float | None = None
        self.write_s: float | None = None
        self.write_pending = 0
        self.period = pool.keepalive_s
        self.timer: asyncio.TimerHandle | None = None

    # -- the request ------------------------------------------------------------------------------------------

    def send(self, request: bytes, timeouts: Timeouts) -> asyncio.Future[Reply]:
        """Write the whole request at once; the future gets the answer or the httpx error."""
        assert self.transport is not None
        self.waiter = waiter = self.pool.loop.create_future()
        self.keep = False
        self.write_pending = 0
        self.activity = time.monotonic()
        if timeouts is not self.timeouts or self.timer is None:
            self._time_with(timeouts)
        self.transport.write(request)
        return waiter

    def _time_with(self, timeouts: Timeouts) -> None:
        """Take this request's timeouts; the timer then fires at least once per the shortest of them, so it never
        fires after a deadline (it re-arms for whatever is left when it fires early)."""
        self.timeouts = timeouts
        self.read_s = timeouts.get("read")
        self.write_s = timeouts.get("write")
        self.period = min(s for s in (self.pool.keepalive_s, self.read_s, self.write_s) if s is not None)
        self._arm(self.period)

    def _arm(self, delay: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.pool.loop.call_later(max(delay, 0.0), self._watch)

    def _watch(self) -> None:
        """Fail an answer that stalls past its timeout, close a connection idle past keep-alive, else re-arm."""
        self.timer = None
        if self.closed or self.transport is None:
            return
        now = time.monotonic()
        if self.waiter is None:
            deadline = self.activity + self.pool.keepalive_s
            if now >= deadline:
                self.close()
                return
        else:
            error: type[httpx.TimeoutException]
            pending = self.transport.get_write_buffer_size()
            if pending:  # still sending: progress counts as activity
                if pending != self.write_pending:
                    self.write_pending = pending
                    self.activity = now
                gap, error, what = self.write_s, httpx.WriteTimeout, "took no more of the request"
            else:
                gap, error, what = self.read_s, httpx.ReadTimeout, "sent no answer byte"
            deadline = self.activity + gap if gap is not None else now + self.period
            if now >= deadline:
                self.fail(error(f"{self.pool.name} {what} for {gap:g} s"))
                return
        self._arm(min(deadline, now + self.period) - now)

    # -- asyncio.Protocol ---------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection can no longer be trusted
            self.abort()
            return
        self.activity = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(httpx.RemoteProtocolError(f"{self.pool.name} switched protocols instead of answering"))
        except httptools.HttpParserError as exc:
            self.fail(httpx.RemoteProtocolError(f"{self.pool.name} sent no valid HTTP/1.1 answer ({exc})"))

    def eof_received(self) -> None:
        self.keep = False  # returning None lets the transport close, and connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.keep = False
        self.pool.forget(self)
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            return
        if exc is None and self.head_done and self._ends_at_close():
            self._finish(waiter)
        elif exc is None:
            waiter.set_exception(httpx.RemoteProtocolError(
                f"{self.pool.name} closed the connection before a whole answer"))
        else:
            waiter.set_exception(httpx.ReadError(f"the connection to {self.pool.name} broke: {exc}"))

    # -- httptools callbacks ------------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.waiter is None:  # a second answer to one request
            self.abort()
        self.head_done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_message_complete(self) -> None:
        waiter = self.waiter
        if waiter is None:
            return
        if self.parser.get_status_code() < 200:  # 1xx: an interim answer, the real one follows
            self.raw_headers.clear()
            self.chunks.clear()
            return
        self.waiter = None
        self.keep = self.parser.should_keep_alive()
        self._finish(waiter)

    def _finish(self, waiter: asyncio.Future[Reply]) -> None:
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        headers = Headers(self.raw_headers)
        self.raw_headers.clear()
        encoding = headers.get("content-encoding")
        if encoding is not None:
            try:
                body = decode_body(body, encoding, self.pool.name)
            except httpx.DecodingError as exc:
                self.abort()
                if not waiter.done():
                    waiter.set_exception(exc)
                return
        if not waiter.done():
            waiter.set_result(Reply(self.parser.get_status_code(), headers, body))

    def _ends_at_close(self) -> bool:
        """Whether the answer has neither a length nor chunks, so its body is whatever came before the close."""
        for name, value in self.raw_headers:
            lowered = name.lower()
            if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
                return False
        return True

    # -- the end ------------------------------------------------------------------------------------------------

    def fail(self, error: httpx.HTTPError) -> None:
        """End the request in flight with ``error`` and the connection with it."""
        waiter, self.waiter = self.waiter, None
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def usable(self) -> bool:
        """Open, not closed by its peer, and nothing of a request answered early still waits to be sent."""
        transport = self.transport
        return (not self.closed and transport is not None and not transport.is_closing()
                and not transport.get_write_buffer_size())

    def close(self) -> None:
        """Close after what was written is sent (an answer read whole, or a connection idle too long)."""
        self._end()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once, whatever is in flight either way."""
        self._end()
        if self.transport is not None:
            self.transport.abort()

    def _end(self) -> None:
        self.closed = True
        self.keep = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.pool.forget(self)

    def __repr__(self) -> str:
        return f"<Connection to {self.pool.name}{' closed' if self.closed else ''}>"


class Pool:
    """The connections to one (scheme, host, port): idle ones last-in first-out, so the warm ones are reused and
    the others age out."""

    def __init__(self, loop: asyncio.AbstractEventLoop, scheme: str, host: str, port: int,
                 ssl_context: ssl.SSLContext | None, max_connections: int, keepalive_s: float) -> None:
        self.loop = loop
        self.host = host
        self.port = port
        self.name = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        self.ssl_context = ssl_context if scheme == "https" else None
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self.idle: list[Connection] = []
        self.open = 0  # connections open or being opened
        self.connections: set[Connection] = set()
        self.waiters: deque[asyncio.Future[None]] = deque()

    def take_idle(self) -> Connection | None:
        idle = self.idle
        while idle:
            connection = idle.pop()
            if connection.usable() and time.monotonic() - connection.activity < self.keepalive_s:
                return connection
            connection.close()
        return None

    async def acquire(self, timeouts: Timeouts) -> Connection:
        """An idle connection or a new one, waiting up to the pool timeout while ``max_connections`` are open."""
        if self.open >= self.max_connections:
            pool_s = timeouts.get("pool")
            try:
                async with asyncio.timeout(pool_s):
                    while self.open >= self.max_connections:
                        connection = self.take_idle()
                        if connection is not None:
                            return connection
                        await self._wait()
            except TimeoutError:
                raise httpx.PoolTimeout(
                    f"no connection to {self.name} came free within {pool_s:g} s") from None
        return await self._connect(timeouts)

    async def _wait(self) -> None:
        waiter = self.loop.create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken, then cancelled: the turn goes to the next in line
            raise

    def _wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self, timeouts: Timeouts) -> Connection:
        self.open += 1
        connect_s = timeouts.get("connect")
        try:
            async with asyncio.timeout(connect_s):
                _, connection = await self.loop.create_connection(
                    lambda: Connection(self), self.host, self.port, ssl=self.ssl_context,
                    server_hostname=self.host if self.ssl_context is not None else None)
        except BaseException as exc:
            self.open -= 1
            self._wake()
            if isinstance(exc, TimeoutError):
                raise httpx.ConnectTimeout(f"no connection to {self.name} within {connect_s:g} s") from None
            if isinstance(exc, OSError):
                raise httpx.ConnectError(f"cannot connect to {self.name}: {exc.strerror or exc}") from exc
            raise
        if connection.closed:  # lost as soon as it was made
            self.open -= 1
            self._wake()
            raise httpx.ConnectError(f"{self.name} closed the connection as it opened")
        connection.counted = True
        self.connections.add(connection)
        return connection

    def release(self, connection: Connection) -> None:
        """Back to the idle list after a whole answer that keeps the connection, or closed."""
        if connection.keep and connection.usable():
            self.idle.append(connection)
            if self.waiters:
                self._wake()
        else:
            connection.close()

    def forget(self, connection: Connection) -> None:
        """A connection ends: its place is free (once, however many ways it ended)."""
        if connection.counted:
            connection.counted = False
            self.open -= 1
            self.connections.discard(connection)
            if connection in self.idle:
                self.idle.remove(connection)
            self._wake()

    def close(self) -> None:
        for connection in list(self.connections):
            with suppress(RuntimeError):  # a pool left behind by a loop that has closed since
                connection.abort()


class Http1Client:
    """Keep-alive pools per (scheme, host, port), made in the running event loop on first use. https verifies the
    host's certificate with ``ssl_context`` (by default ``ssl.create_default_context()``, the system's CAs)."""

    def __init__(self, max_connections: int = 256, keepalive_s: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self._pools: dict[tuple[str, str, int], Pool] = {}
        # (url, header fields) -> the pool and the request's head up to the Content-Length value
        self._routes: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[Pool, bytes]] = {}
        self._ssl_context = ssl_context
        self._loop: asyncio.AbstractEventLoop | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeouts: Timeouts) -> Reply:
        """POST ``body`` once and read the whole answer; raises httpx's errors (the module docstring says which)."""
        key = (url, tuple(headers.items()))
        route = self._routes.get(key)
        if route is None or route[0].loop is not asyncio.get_running_loop():
            route = self._route(key)
        pool, head = route
        connection = pool.take_idle()
        if connection is None:
            connection = await pool.acquire(timeouts)
        waiter = connection.send(b"".join((head, b"%d\r\n\r\n" % len(body), body)), timeouts)
        try:
            reply = await waiter
        except BaseException:
            connection.abort()
            raise
        pool.release(connection)
        return reply

    def _route(self, key: tuple[str, tuple[tuple[str, str], ...]]) -> tuple[Pool, bytes]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # connections belong to the loop that made them: a new loop starts afresh
            self._drop_pools()
            self._loop = loop
        url, fields = key
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"cannot POST over {scheme or 'a URL without a scheme'!r}")
        try:
            host, port = parts.hostname, parts.port or DEFAULT_PORTS[scheme]
        except ValueError:
            host = None
        if not host:
            raise httpx.UnsupportedProtocol("the URL names no host and port to connect to")
        pools_key = (scheme, host, port)
        pool = self._pools.get(pools_key)
        if pool is None:
            context = self._ssl() if scheme == "https" else None
            pool = self._pools[pools_key] = Pool(loop, scheme, host, port, context, self.max_connections,
                                                 self.keepalive_s)
        route = (pool, request_head(parts.path or "/", parts.query, host, port, scheme, fields))
        if len(self._routes) >= MAX_ROUTES:
            self._routes.clear()
        self._routes[key] = route
        return route

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
            self._ssl_context.set_alpn_protocols(["http/1.1"])
        return self._ssl_context

    def open_connections(self) -> int:
        """Connections open or being opened, over all pools."""
        return sum(pool.open for pool in self._pools.values())

    async def aclose(self) -> None:
        """Close every connection, in use or idle."""
        self._drop_pools()

    def _drop_pools(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._routes.clear()


def request_head(path: str, query: str, host: str, port: int, scheme: str,
                 fields: tuple[tuple[str, str], ...]) -> bytes:
    """``POST <target> HTTP/1.1``, Host, the caller's fields, accept-encoding unless given, up to the length."""
    target = path + ("?" + query if query else "")
    if any(char <= " " or char == "\x7f" for char in target):
        raise httpx.LocalProtocolError("the URL's path holds a space or a control character")
    authority = host if ":" not in host else f"[{host}]"
    if not authority.isascii():
        authority = authority.encode("idna").decode("ascii")
    if port != DEFAULT_PORTS[scheme]:
        authority += f":{port}"
    lines = [f"POST {target} HTTP/1.1", f"host: {authority}"]
    given = set()
    for name, value in fields:
        lowered = name.lower()
        if not TOKEN.fullmatch(name) or FORBIDDEN_IN_VALUE.search(value):
            raise httpx.LocalProtocolError("a request header field has a name or value that HTTP cannot carry")
        if lowered not in OWN_FIELDS:
            lines.append(f"{name}: {value}")
            given.add(lowered)
    try:
        head = "\r\n".join(lines).encode("latin-1") + b"\r\n"
    except UnicodeEncodeError:
        raise httpx.LocalProtocolError("a request header field or the URL is not Latin-1 text") from None
    if "accept-encoding" not in given:
        head += ACCEPT_ENCODING
    return head + b"content-length: "
