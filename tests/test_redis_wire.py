"""The admission's lean Redis client: pipelined commands each get their own reply, an error reply fails only its
command, scripts survive SCRIPT FLUSH, a cut or silent connection fails what is in flight (AdmissionUnavailable
in the admission) and the next call reconnects, URLs with a password, a database, TLS or a unix socket, and one
connection per event loop."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from cache.cache_helpers import free_port, listening
from redis.exceptions import AuthenticationError, InvalidResponse, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contentmill.errors import AdmissionUnavailable
from contentmill.gateway.admission import Claim, Reservation
from contentmill.gateway.admission_redis import RedisAdmission
from contentmill.gateway.redis_wire import RedisWire, Script

REDIS_URL = "redis://127.0.0.1:6379/0"
PASSWORD = "s3cret-wire-pw"


def unique_name() -> str:
    return f"cm-wire-test-{uuid.uuid4().hex[:12]}"


def connections(name: str, client: redis.Redis | None = None) -> list[dict[str, Any]]:
    """The connections Redis lists under a client name."""
    own = client is None
    client = client or redis.Redis.from_url(REDIS_URL)
    try:
        return [c for c in client.client_list() if c.get("name") == name]
    finally:
        if own:
            client.close()


def kill(name: str) -> None:
    with redis.Redis.from_url(REDIS_URL) as client:
        [conn] = connections(name, client)
        client.execute_command("CLIENT", "KILL", "ID", conn["id"])


def wait_until(check: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def wire() -> RedisWire:
    return RedisWire.from_url(REDIS_URL, name=unique_name())


async def test_concurrent_commands_each_get_their_own_reply_on_one_connection(
        wire: RedisWire, redis_prefix: str) -> None:
    values = [f"v{i}-{uuid.uuid4().hex}" for i in range(500)]
    assert await asyncio.gather(*(wire.execute("ECHO", v) for v in values)) == [v.encode() for v in values]
    counts = await asyncio.gather(*(wire.execute("INCR", redis_prefix + "n") for _ in range(500)))
    assert counts == list(range(1, 501))  # written in the order they were sent, answered in that order
    assert len(connections(str(wire.name))) == 1
    await wire.aclose()
    assert not connections(str(wire.name))


async def test_an_error_reply_fails_only_its_command(wire: RedisWire, redis_prefix: str) -> None:
    key = redis_prefix + "text"
    await wire.execute("SET", key, "not a hash")
    outcomes: Any = await asyncio.gather(wire.execute("ECHO", "a"), wire.execute("HGET", key, "f"),
                                         wire.execute("ECHO", "b"), return_exceptions=True)
    first, wrong, last = outcomes
    assert (first, last) == (b"a", b"b")
    assert isinstance(wrong, ResponseError) and str(wrong).startswith("WRONGTYPE")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await wire.execute("HGET", key, "f")
    assert await wire.execute("GET", key) == b"not a hash"  # the same connection goes on
    assert len(connections(str(wire.name))) == 1
    await wire.aclose()


async def test_a_cancelled_caller_leaves_the_order_intact(wire: RedisWire) -> None:
    slow = asyncio.ensure_future(wire.execute("BLPOP", f"nothing-{uuid.uuid4().hex}", 0.2))
    gone = asyncio.ensure_future(wire.execute("ECHO", "dropped"))
    await asyncio.sleep(0.05)  # both written; the ECHO's reply is behind the BLPOP's
    gone.cancel()
    assert list(await asyncio.gather(wire.execute("ECHO", "kept"), slow)) == [b"kept", None]
    await wire.aclose()


async def test_a_script_runs_again_after_script_flush(wire: RedisWire, redis_prefix: str) -> None:
    script = Script.of(f"-- {uuid.uuid4().hex}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])")
    key = redis_prefix + "scripted"
    assert await wire.run(script, [key], [2]) == 2
    assert await wire.execute("SCRIPT", "EXISTS", script.sha) == [1]
    await wire.execute("SCRIPT", "FLUSH")
    assert await wire.execute("SCRIPT", "EXISTS", script.sha) == [0]
    assert await asyncio.gather(*(wire.run(script, [key], [1]) for _ in range(20))) == list(range(3, 23))
    assert await wire.execute("SCRIPT", "EXISTS", script.sha) == [1]
    with pytest.raises(ResponseError):  # a script's own error is the caller's, not a missing script
        await wire.run(Script.of("return redis.call('NOSUCHCOMMAND')"), [], [])
    await wire.aclose()


async def test_many_runs_of_a_script_answer_in_order_after_script_flush(wire: RedisWire, redis_prefix: str) -> None:
    script = Script.of(f"-- {uuid.uuid4().hex}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])")
    keys = [redis_prefix + f"many{i % 3}" for i in range(30)]
    assert await wire.run_many(script, [([k], [1]) for k in keys]) == [1 + i // 3 for i in range(30)]
    await wire.execute("SCRIPT", "FLUSH")
    assert await wire.run_many(script, [([k], [10]) for k in keys]) == [10 + 10 + 10 * (i // 3) for i in range(30)]
    await wire.execute("SET", redis_prefix + "text", "not a number")
    with pytest.raises(ResponseError):  # one call's error is raised once every call has its reply
        await wire.run_many(script, [([keys[0]], [1]), ([redis_prefix + "text"], [1]), ([keys[1]], [1])])
    assert [await wire.execute("GET", k) for k in keys[:2]] == [b"111", b"111"]  # both others ran
    await wire.aclose()


async def test_a_killed_connection_fails_what_is_in_flight_and_the_next_call_reconnects(wire: RedisWire) -> None:
    assert await wire.execute("PING") == b"PONG"
    [before] = connections(str(wire.name))
    blocked = asyncio.ensure_future(wire.execute("BLPOP", f"nothing-{uuid.uuid4().hex}", 10))
    behind = [asyncio.ensure_future(wire.execute("ECHO", str(i))) for i in range(5)]
    await asyncio.sleep(0.05)  # all written, the BLPOP holding the replies behind it
    kill(str(wire.name))
    for pending in [blocked, *behind]:
        with pytest.raises(RedisConnectionError):
            await pending
    assert await wire.execute("ECHO", "again") == b"again"
    [after] = connections(str(wire.name))
    assert after["id"] != before["id"]
    await wire.aclose()


async def test_a_killed_connection_is_admission_unavailable_then_admission_goes_on(redis_prefix: str) -> None:
    name = unique_name()
    admission = RedisAdmission(aioredis.Redis.from_url(REDIS_URL), prefix=redis_prefix + "adm:",
                               wire=RedisWire.from_url(REDIS_URL, name=name))
    claim = Claim("tpm", "bucket", 10, 1000, period_s=60.0, label="tpm test")
    assert isinstance(await admission.acquire([claim], ttl_s=30), Reservation)
    blocked = asyncio.ensure_future(admission.wire.execute("BLPOP", f"nothing-{uuid.uuid4().hex}", 10))
    acquiring = asyncio.ensure_future(admission.acquire([claim], ttl_s=30))  # queued behind the BLPOP
    await asyncio.sleep(0.05)
    kill(name)
    with pytest.raises(RedisConnectionError):
        await blocked
    with pytest.raises(AdmissionUnavailable, match=r"Redis at 127\.0\.0\.1:6379 cannot be reached \(ConnectionError"):
        await acquiring
    assert isinstance(await admission.acquire([claim], ttl_s=30), Reservation)
    [(tokens, _)] = await admission.levels([claim])
    assert tokens == pytest.approx(980, abs=1)  # the call cut off charged nothing
    await admission.aclose()
    assert wait_until(lambda: not connections(name))


async def test_an_error_answered_by_redis_says_so_and_does_not_call_redis_unreachable(redis_prefix: str) -> None:
    admission = RedisAdmission.from_url(REDIS_URL, prefix=redis_prefix + "adm:")
    claim = Claim("rpm", "bucket", 1, 100, period_s=60.0, label="rpm test")
    redis.Redis.from_url(REDIS_URL).set(f"{redis_prefix}adm:b:rpm", "not a hash")  # another program's key
    with pytest.raises(AdmissionUnavailable) as caught:
        await admission.acquire([claim], ttl_s=30)
    message = str(caught.value)
    assert "answered with an error" in message and "WRONGTYPE" in message and "\n" not in message
    assert "cannot be reached" not in message
    await admission.aclose()


class SilentServer:
    """Accepts connections and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self.listener.close()
        self.thread.join(5)
        for conn in self.accepted:
            conn.close()


async def test_a_silent_server_times_out_every_pending_command_without_a_task_per_command() -> None:
    server = SilentServer()
    wire = RedisWire.from_url(f"redis://127.0.0.1:{server.port}/0", name=None, timeout=0.3)
    try:
        first = asyncio.ensure_future(wire.execute("PING"))
        await asyncio.sleep(0.1)  # connected, the PING written and waiting
        second = asyncio.ensure_future(wire.execute("PING"))
        await asyncio.sleep(0.01)
        assert asyncio.all_tasks() == {asyncio.current_task(), first, second}  # no task of the client's own
        started = time.monotonic()
        for pending in (first, second):  # the first one's deadline fails both
            with pytest.raises(RedisTimeoutError, match="did not answer in 0.3 s"):
                await pending
        assert time.monotonic() - started < 0.5
        began = time.monotonic()
        outcomes = await asyncio.gather(*(wire.execute("ECHO", str(i)) for i in range(50)), return_exceptions=True)
        assert all(isinstance(o, RedisTimeoutError) for o in outcomes)  # every pending command, at once
        assert 0.25 < time.monotonic() - began < 1.5
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert wait_until(lambda: len(server.accepted) == 2)  # the timed-out connection dropped, a new one opened
    finally:
        await wire.aclose()
        server.close()


async def test_a_reply_that_is_not_resp_fails_what_is_pending_and_drops_the_connection() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    answered: list[socket.socket] = []

    def garble() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            answered.append(conn)
            conn.recv(65536)
            conn.sendall(b"@not a reply type\r\n")

    thread = threading.Thread(target=garble, daemon=True)
    thread.start()
    wire = RedisWire.from_url(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", name=None)
    try:
        for _ in range(2):  # the second command opens a new connection, which fails alike
            with pytest.raises(InvalidResponse, match="not RESP"):
                await wire.execute("PING")
        assert wait_until(lambda: len(answered) == 2)
    finally:
        await wire.aclose()
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)
        for conn in answered:
            conn.close()


async def test_a_refused_port_is_a_connection_error_at_once() -> None:
    wire = RedisWire.from_url(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(RedisConnectionError) as raised:
        await wire.execute("PING")
    assert time.monotonic() - started < 1.0
    assert "127.0.0.1" in str(raised.value) and PASSWORD not in str(raised.value)
    assert PASSWORD not in repr(wire.endpoint)


@dataclass
class PrivateRedis:
    port: int
    socket_path: Path
    process: subprocess.Popen[bytes]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own that asks for a password, on TCP, a unix socket and TLS."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/services.sh installs it)")
    port = free_port()
    path = tmp_path / "redis.sock"
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--unixsocket", str(path), "--save", "",
         "--appendonly", "no", "--requirepass", PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: listening(port) and path.exists(), 10), "redis-server did not start"
        yield PrivateRedis(port, path, process)
    finally:
        process.kill()
        process.wait()


def keys_by_db(port: int) -> dict[int, list[bytes]]:
    found = {}
    for db in (0, 1):
        with redis.Redis(port=port, password=PASSWORD, db=db) as client:
            found[db] = sorted(client.keys("*"))
    return found


async def test_password_and_database_come_from_the_url(private_redis: PrivateRedis) -> None:
    port = private_redis.port
    urls = (f"redis://:{PASSWORD}@127.0.0.1:{port}/1", f"redis://default:{PASSWORD}@127.0.0.1:{port}/1",
            f"unix://:{PASSWORD}@{private_redis.socket_path}?db=1")
    for runs, url in enumerate(urls, start=1):
        wire = RedisWire.from_url(url)
        assert await wire.execute("INCR", "counted") == runs
        assert await wire.execute("CLIENT", "GETNAME") == b"contentmill-admission"
        await wire.aclose()
    assert keys_by_db(port) == {0: [], 1: [b"counted"]}
    # redis-py's client says where and as whom: the admission's wire follows it.
    admission = RedisAdmission(aioredis.Redis.from_url(f"redis://:{PASSWORD}@127.0.0.1:{port}/1"), prefix="adm:")
    claim = Claim("rpm", "bucket", 1, 10, label="rpm test")
    assert isinstance(await admission.acquire([claim], ttl_s=30), Reservation)
    await admission.aclose()
    assert b"adm:b:rpm" in keys_by_db(port)[1]


async def test_a_wrong_password_is_refused_without_showing_it(private_redis: PrivateRedis) -> None:
    wrong = "wr0ng-" + PASSWORD
    wire = RedisWire.from_url(f"redis://:{wrong}@127.0.0.1:{private_redis.port}/1")
    with pytest.raises(AuthenticationError) as raised:
        await wire.execute("PING")
    assert isinstance(raised.value, RedisConnectionError)
    assert "refused the credentials" in str(raised.value) and wrong not in str(raised.value)
    admission = RedisAdmission.from_url(f"redis://:{wrong}@127.0.0.1:{private_redis.port}/1")
    with pytest.raises(AdmissionUnavailable) as unavailable:
        await admission.acquire([Claim("rpm", "bucket", 1, 10)], ttl_s=30)
    assert wrong not in str(unavailable.value) and PASSWORD not in str(unavailable.value)
    await admission.aclose()
    without = RedisWire.from_url(f"redis://127.0.0.1:{private_redis.port}/0")
    with pytest.raises(ResponseError, match="NOAUTH"):
        await without.execute("PING")
    await without.aclose()


def self_signed(directory: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for a TLS Redis")
    cert, key = directory / "redis.crt", directory / "redis.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


async def test_tls_from_a_rediss_url(tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/services.sh installs it)")
    cert, key = self_signed(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
         "--tls-key-file", str(key), "--tls-auth-clients", "no", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: listening(port), 10), "redis-server did not start with TLS"
        for query in (f"ssl_ca_certs={cert}", "ssl_cert_reqs=none"):
            wire = RedisWire.from_url(f"rediss://127.0.0.1:{port}/0?{query}")
            assert await wire.execute("ECHO", "over tls") == b"over tls"
            await wire.aclose()
        unverified = RedisWire.from_url(f"rediss://127.0.0.1:{port}/0")  # a certificate no CA vouches for
        with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await unverified.execute("PING")
    finally:
        process.kill()
        process.wait()


def test_each_event_loop_has_its_own_connection(redis_prefix: str) -> None:
    wire = RedisWire.from_url(REDIS_URL, name=unique_name())
    name, key = str(wire.name), redis_prefix + "runs"

    async def count() -> Any:
        return await wire.execute("INCR", key)

    assert asyncio.run(count()) == 1
    assert wait_until(lambda: not connections(name))  # closed as its loop shut down
    assert asyncio.run(count()) == 2

    in_thread: list[Any] = []
    used, release = threading.Event(), threading.Event()

    def other_loop() -> None:
        async def hold() -> None:
            in_thread.append(await count())
            used.set()
            await asyncio.get_running_loop().run_in_executor(None, release.wait)
            in_thread.append(await wire.execute("PING"))  # after the main loop's aclose: opens again

        asyncio.run(hold())

    async def main() -> None:
        assert await count() == 3
        thread = threading.Thread(target=other_loop)
        thread.start()
        assert await asyncio.to_thread(used.wait, 10)
        assert in_thread == [4]
        assert len(connections(name)) == 2  # one per loop
        assert await count() == 5
        await wire.aclose()  # this loop's connection, and the other loop's through that loop
        assert await asyncio.to_thread(wait_until, lambda: not connections(name))
        release.set()
        await asyncio.to_thread(thread.join, 10)
        assert in_thread == [4, b"PONG"]

    asyncio.run(main())
    assert wait_until(lambda: not connections(name))
