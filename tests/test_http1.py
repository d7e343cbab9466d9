"""The lean HTTP/1.1 client against real servers: the fake upstream, and small raw servers that answer byte by byte
what a test needs (chunks, gzip, closes, cuts, silence, garbage)."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import ssl
import subprocess
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from contentmill.providers.fake import fake_reply
from contentmill.providers.http1 import Http1Client
from contentmill.testing.harness import Upstream

pytestmark = pytest.mark.timeout(30)  # a connection that waits forever fails its test instead of the suite

SECRET = "sk-test-http1-never-shown-0123456789"
HEADERS = {"authorization": f"Bearer {SECRET}", "content-type": "application/json", "user-agent": "contentmill-test"}
TIMEOUTS = httpx.Timeout(10.0).as_dict()
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def chat_body(content: str) -> bytes:
    return orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 200, "messages": [{"role": "user", "content": content}]})


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """The head and body of the next request on a connection, None once the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


def answer(body: bytes, *fields: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Content-Type: application/json", *fields]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class RawServer:
    """A loopback server that runs ``handler`` per connection and counts the connections it accepted."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.accepted = 0
        self.closed_by_client = 0
        self.port = 0
        self.requests: list[bytes] = []  # the heads, in order
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    @property
    def https_url(self) -> str:
        return f"https://localhost:{self.port}/v1/chat/completions"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()

    def keep_alive(self) -> Handler:
        """Answer every request on the connection with its own body, echoed as JSON."""
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (request := await read_request(reader)) is not None:
                self.requests.append(request[0])
                writer.write(answer(orjson.dumps({"echo": request[1].decode()})))
                await writer.drain()
            self.closed_by_client += 1
        return handle


@asynccontextmanager
async def raw_server(handler: Handler | None = None, tls: ssl.SSLContext | None = None) -> AsyncIterator[RawServer]:
    server = RawServer(lambda r, w: asyncio.sleep(0), tls)
    server.handler = handler if handler is not None else server.keep_alive()
    async with server:
        yield server


@asynccontextmanager
async def lean_client(**options: Any) -> AsyncIterator[Http1Client]:
    client = Http1Client(**options)
    try:
        yield client
    finally:
        await client.aclose()


def assert_no_secret(error: BaseException) -> None:
    assert SECRET not in str(error) and SECRET not in repr(error)


async def failed_post(handler: Handler, expected: type[Exception] | tuple[type[Exception], ...],
                      timeouts: Mapping[str, float | None] = TIMEOUTS) -> RawServer:
    """Post once to a raw server answering with ``handler`` and see it fail with ``expected``, an error that names
    the server and no header, leaving no connection open; returns the server, to count what it saw."""
    async with raw_server(handler) as server, lean_client() as client:
        async with asyncio.timeout(5):  # past every timeout a test sets: its expiry fails the test as TimeoutError
            with pytest.raises(expected) as info:
                await client.post(server.url, b"{}", HEADERS, timeouts)
        assert client.open_connections() == 0
    assert f"127.0.0.1:{server.port}" in str(info.value)
    assert_no_secret(info.value)
    return server


# -- the fake upstream ------------------------------------------------------------------------------------------


async def test_a_chat_completion_round_trip(upstream: Callable[..., Upstream]) -> None:
    server = upstream()
    async with lean_client() as client:
        reply = await client.post(server.base_url + "/chat/completions", chat_body("Describe a teak bowl."),
                                  HEADERS, TIMEOUTS)
    assert reply.status_code == 200
    data = orjson.loads(reply.content)
    assert data["choices"][0]["message"]["content"] == fake_reply("Describe a teak bowl.", 200)[0]
    assert data["usage"]["completion_tokens"] > 0
    assert reply.headers.get("X-Request-Id") == reply.headers["x-request-id"]
    assert reply.headers["x-request-id"].startswith("req_")
    assert "X-RATELIMIT-LIMIT-REQUESTS" in reply.headers
    assert server.stats()["requests"] == 1


async def test_a_hundred_concurrent_requests_each_get_their_own_answer(upstream: Callable[..., Upstream]) -> None:
    server = upstream()
    prompts = [f"Describe lamp number {i}." for i in range(100)]
    async with lean_client(max_connections=16) as client:
        replies = await asyncio.gather(*(
            client.post(server.base_url + "/chat/completions", chat_body(p), HEADERS, TIMEOUTS) for p in prompts))
        assert client.open_connections() <= 16
    assert [r.status_code for r in replies] == [200] * 100
    answers = [orjson.loads(r.content)["choices"][0]["message"]["content"] for r in replies]
    assert answers == [fake_reply(p, 200)[0] for p in prompts]
    assert len({r.headers["x-request-id"] for r in replies}) == 100
    assert server.stats()["requests"] == 100


async def test_an_error_status_is_an_answer_not_an_exception(upstream: Callable[..., Upstream]) -> None:
    server = upstream(api_key=["sk-good"])
    async with lean_client() as client:
        reply = await client.post(server.base_url + "/chat/completions", chat_body("Hi."), HEADERS, TIMEOUTS)
    assert reply.status_code == 401
    assert b"error" in reply.content


# -- connections ------------------------------------------------------------------------------------------------


async def test_sequential_requests_reuse_one_kept_alive_connection() -> None:
    async with raw_server() as server, lean_client() as client:
        for i in range(5):
            reply = await client.post(server.url, f"{i}".encode(), HEADERS, TIMEOUTS)
            assert orjson.loads(reply.content) == {"echo": f"{i}"}
        assert server.accepted == 1
        assert client.open_connections() == 1
    head = server.requests[0].decode("latin-1").lower()
    assert head.startswith("post /v1/chat/completions http/1.1\r\n")
    assert f"host: 127.0.0.1:{server.port}\r\n" in head and "content-length: 1\r\n" in head
    assert "accept-encoding: gzip, deflate\r\n" in head and f"authorization: bearer {SECRET.lower()}" in head


async def test_no_more_connections_than_the_limit() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            await asyncio.sleep(0.01)
            writer.write(answer(request[1]))
    async with raw_server(slow) as server, lean_client(max_connections=4) as client:
        replies = await asyncio.gather(*(client.post(server.url, b"%d" % i, HEADERS, TIMEOUTS) for i in range(40)))
    assert [r.content for r in replies] == [b"%d" % i for i in range(40)]
    assert server.accepted == 4


async def test_connection_close_in_the_answer_ends_the_connection() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        assert request is not None
        writer.write(answer(b'{"n": %d}' % server.accepted, "Connection: close"))
        await writer.drain()
        await reader.read()  # until the client closes
        server.closed_by_client += 1
    async with raw_server(once) as server, lean_client() as client:
        first = await client.post(server.url, b"{}", HEADERS, TIMEOUTS)
        second = await client.post(server.url, b"{}", HEADERS, TIMEOUTS)
        assert (first.content, second.content) == (b'{"n": 1}', b'{"n": 2}')
        assert server.accepted == 2
        await asyncio.sleep(0.05)
        assert server.closed_by_client == 2  # the client closed each after reading its answer
        assert client.open_connections() == 0


async def test_an_http_1_0_answer_ends_the_connection_and_its_body_may_end_at_the_close() -> None:
    async def old(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + b'{"old": true}')
        await writer.drain()
    async with raw_server(old) as server, lean_client() as client:
        for _ in range(2):
            reply = await client.post(server.url, b"{}", HEADERS, TIMEOUTS)
            assert reply.content == b'{"old": true}'
        assert server.accepted == 2


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        assert request is not None
        writer.write(answer(b'{"n": %d}' % server.accepted))  # keep-alive by HTTP/1.1's default
        await writer.drain()
    async with raw_server(one_answer) as server, lean_client() as client:
        first = await client.post(server.url, b"{}", HEADERS, TIMEOUTS)
        await asyncio.sleep(0.1)  # the server has closed the connection meanwhile
        second = await client.post(server.url, b"{}", HEADERS, TIMEOUTS)
        assert (first.content, second.content) == (b'{"n": 1}', b'{"n": 2}')
        assert server.accepted == 2


async def test_an_idle_connection_is_closed_after_keepalive() -> None:
    async with raw_server() as server, lean_client(keepalive_s=0.2) as client:
        await client.post(server.url, b"1", HEADERS, TIMEOUTS)
        assert client.open_connections() == 1
        await asyncio.sleep(0.5)
        assert client.open_connections() == 0
        assert server.closed_by_client == 1
        await client.post(server.url, b"2", HEADERS, TIMEOUTS)
        assert server.accepted == 2


# -- bodies -----------------------------------------------------------------------------------------------------


async def test_a_chunked_answer() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Request-Id: req_1\r\n\r\n")
            for piece in (b'{"answer": ', b'"in three ', b'chunks"}'):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")
    async with raw_server(chunked) as server, lean_client() as client:
        for _ in range(2):
            reply = await client.post(server.url, b"{}", HEADERS, TIMEOUTS)
            assert orjson.loads(reply.content) == {"answer": "in three chunks"}
            assert reply.headers["x-request-id"] == "req_1"
        assert server.accepted == 1


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_compressed_answer_is_decoded(coding: str) -> None:
    payload = orjson.dumps({"choices": [{"text": "compressed " * 50}]})
    packed = gzip.compress(payload) if coding == "gzip" else zlib.compress(payload)

    async def compressing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            assert b"accept-encoding: gzip, deflate" in request[0].lower()
            writer.write(answer(packed, f"Content-Encoding: {coding}"))
    async with raw_server(compressing) as server, lean_client() as client:
        reply = await client.post(server.url, b"{}", HEADERS, TIMEOUTS)
    assert reply.content == payload
    assert reply.headers["content-encoding"] == coding


async def test_repeated_header_fields_read_joined() -> None:
    async def repeated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"{}", "Vary: Accept", "vary: Origin"))
    async with raw_server(repeated) as server, lean_client() as client:
        reply = await client.post(server.url, b"{}", HEADERS, TIMEOUTS)
    assert reply.headers["VARY"] == "Accept, Origin"


async def test_an_interim_100_continue_is_skipped() -> None:
    async def interim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b'{"ok": 1}'))
    async with raw_server(interim) as server, lean_client() as client:
        reply = await client.post(server.url, b"{}", HEADERS, TIMEOUTS)
    assert (reply.status_code, reply.content) == (200, b'{"ok": 1}')


# -- failures ---------------------------------------------------------------------------------------------------


async def test_a_connection_cut_mid_body_is_an_error_and_is_not_resent() -> None:
    received: list[bytes] = []

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            received.append(request[1])
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b'{"half": ')
            await writer.drain()
            writer.close()
    server = await failed_post(cut, (httpx.RemoteProtocolError, httpx.ReadError))
    assert server.accepted == 1 and received == [b"{}"]  # sent once, never again by the client


async def test_a_close_before_any_answer_is_a_remote_protocol_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
    await failed_post(hang_up, httpx.RemoteProtocolError)


async def test_an_upstream_that_never_answers_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(60)
    await failed_post(silent, httpx.ReadTimeout, httpx.Timeout(10.0, read=0.3).as_dict())


async def test_a_trickle_within_the_read_timeout_is_not_cut() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        body = b'{"slow": "' + b"x" * 8 + b'"}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        for byte in body:
            await asyncio.sleep(0.05)
            writer.write(bytes([byte]))
    timeouts = httpx.Timeout(10.0, read=0.3).as_dict()  # the whole answer takes longer, no gap does
    async with raw_server(trickle) as server, lean_client() as client:
        reply = await client.post(server.url, b"{}", HEADERS, timeouts)
    assert orjson.loads(reply.content) == {"slow": "x" * 8}


async def test_a_refused_port_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with lean_client() as client:
        with pytest.raises(httpx.ConnectError) as info:
            await client.post(f"http://127.0.0.1:{port}/v1/chat/completions", b"{}", HEADERS, TIMEOUTS)
        assert client.open_connections() == 0
    assert f"127.0.0.1:{port}" in str(info.value)
    assert_no_secret(info.value)


async def test_a_cancelled_request_leaves_no_connection_in_the_pool() -> None:
    async def late_then_on_time(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = server.accepted == 1
        while await read_request(reader) is not None:
            if first:  # answers only once the client has given up on it
                await reader.read()
                server.closed_by_client += 1
                writer.write(answer(b'{"late": true}'))
                return
            writer.write(answer(b'{"on time": true}'))
    async with raw_server(late_then_on_time) as server, lean_client() as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await client.post(server.url, b"{}", HEADERS, TIMEOUTS)
        assert client.open_connections() == 0
        await asyncio.sleep(0.05)
        assert server.closed_by_client == 1
        reply = await client.post(server.url, b"{}", HEADERS, TIMEOUTS)
        assert server.accepted == 2
    assert reply.content == b'{"on time": true}'


async def test_garbage_instead_of_an_answer_is_an_httpx_error() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02 not http at all\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(60)
    await failed_post(garbage, httpx.RemoteProtocolError)


async def test_a_header_that_would_split_the_request_is_refused() -> None:
    async with raw_server() as server, lean_client() as client:
        with pytest.raises(httpx.LocalProtocolError) as info:
            await client.post(server.url, b"{}", {**HEADERS, "x-note": "a\r\nx-injected: 1"}, TIMEOUTS)
        assert server.accepted == 0
    assert "x-injected" not in str(info.value)


def test_a_client_used_in_a_second_event_loop_starts_afresh(upstream: Callable[..., Upstream]) -> None:
    server = upstream()
    client = Http1Client()
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()

    async def ask() -> int:
        reply = await client.post(server.base_url + "/chat/completions", chat_body("Hi."), HEADERS, TIMEOUTS)
        return reply.status_code

    try:
        assert first.run_until_complete(ask()) == 200
        assert second.run_until_complete(ask()) == 200  # the first loop's connection is dropped, a new one made
        first.run_until_complete(asyncio.sleep(0.05))  # where the dropped connection finishes closing
        assert client.open_connections() == 1
        second.run_until_complete(client.aclose())
    finally:
        first.close()
        second.close()
    assert server.stats()["requests"] == 2


async def test_https_verifies_the_certificate_and_keeps_the_connection(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for a TLS server")
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    async with raw_server(tls=tls) as server:
        async with lean_client(ssl_context=ssl.create_default_context(cafile=str(cert))) as client:
            for i in range(3):
                reply = await client.post(server.https_url, b"%d" % i, HEADERS, TIMEOUTS)
                assert orjson.loads(reply.content) == {"echo": f"{i}"}
        assert server.accepted == 1
        async with lean_client() as client:  # the system's CAs do not vouch for it
            with pytest.raises(httpx.ConnectError) as info:
                await client.post(server.https_url, b"{}", HEADERS, TIMEOUTS)
    assert f"localhost:{server.port}" in str(info.value)
    assert_no_secret(info.value)
