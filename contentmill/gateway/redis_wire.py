"""A lean asyncio Redis client (RESP2) for the admission's hot commands: its Lua scripts, one round trip each.

redis-py's asyncio client spends some 200 Python-level calls on a command (a pool checkout, an ``asyncio.wait_for``
that is a new task per command on Python 3.11, encoding and parsing layers). Here a command is packed into one
``bytes``, written, and its caller waits on a future that ``data_received`` resolves (``hiredis`` parses).

Invariants:

- **One connection per event loop**, opened by the first command of that loop and shared by all its callers.
  Commands are *pipelined*: each joins a FIFO with its future, and the commands of one turn of the event loop
  are written together at its end (one ``writev``: the settlements of a ledger round are one send, not
  hundreds); Redis answers in the order it read, so the n-th reply resolves the n-th future. A caller cancelled
  while it waits leaves its future in the FIFO; its reply is read and dropped, and the order holds.
- **An error reply fails only its command** (``redis.exceptions.ResponseError``, e.g. WRONGTYPE); the connection
  goes on. **Anything else fails every pending command and drops the connection**: the connection lost
  (``ConnectionError``), a protocol error (``InvalidResponse``), a command unanswered for ``timeout`` seconds
  (``TimeoutError``). A pipelined stream cannot skip a reply, so nothing on it can be trusted after that; the next
  command opens a new connection. The classes are redis-py's, so callers catch ``RedisError`` as they would there.
- **Timeouts cost no task**: each command notes its deadline, and one ``loop.call_at`` timer per connection wakes
  at the oldest pending command's deadline (later ones are at least as late).
- **Loop affinity**: a connection belongs to the loop that opened it and is only touched from that loop; a command
  from another running loop (another ``asyncio.run``, a thread with its own loop) opens that loop's own. A loop
  shutting down through ``asyncio.run`` or ``asyncio.Runner`` closes its connection as it goes (it closes open
  async generators, and each connection holds one); ``aclose`` closes the calling loop's connection and asks
  every other live loop to close its own.
- **Scripts** run by ``EVALSHA``; a NOSCRIPT reply (Redis restarted, ``SCRIPT FLUSH``) sends the source by
  ``EVAL`` once, which loads it again.
- **The password** goes into ``AUTH`` and nowhere else: no error, log or repr shows it.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection as AsyncSSLConnection
from redis.connection import SSLConnection, parse_url
from redis.exceptions import AuthenticationError, InvalidResponse, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

TIMEOUT_S = 5.0  # a Redis that does not answer in this long is unreachable, not slow
CLIENT_NAME = "contentmill-admission"  # what CLIENT LIST shows for these connections

Arg = bytes | str | int | float
_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def pack(args: Sequence[Arg]) -> bytes:
    """One command in RESP: an array of bulk strings (floats as ``repr``, as redis-py sends them), packed by
    hiredis."""
    return cast(bytes, hiredis.pack_command(cast(Any, tuple(args))))


def _evalsha(script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> bytes:
    return pack([b"EVALSHA", script.sha, len(keys), *keys, *args])


def _eval(script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> bytes:
    return pack([b"EVAL", script.source, len(keys), *keys, *args])


def _noscript(error: ResponseError) -> bool:
    return str(error).startswith("NOSCRIPT")


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script and its SHA1, the name ``EVALSHA`` calls it by."""

    source: bytes
    sha: bytes

    @classmethod
    def of(cls, source: str) -> Script:
        data = source.encode()
        return cls(data, hashlib.sha1(data).hexdigest().encode())


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a Redis is and how to log in and pick the database: what a redis-py URL or client says."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None  # a unix socket instead of host:port
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        return self.path or f"{self.host}:{self.port}"

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        """redis://, rediss:// and unix:// URLs, read by redis-py's own ``parse_url``."""
        kwargs: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        return cls.from_kwargs(kwargs.pop("connection_class", None), kwargs)

    @classmethod
    def of_client(cls, client: aioredis.Redis) -> Endpoint:
        """The server, database and credentials a redis-py client connects with."""
        pool = client.connection_pool
        return cls.from_kwargs(pool.connection_class, pool.connection_kwargs)

    @classmethod
    def from_kwargs(cls, connection_class: type | None, kwargs: Mapping[str, Any]) -> Endpoint:
        """From redis-py's connection class and keyword arguments (TLS when the class is its SSLConnection)."""
        tls = connection_class is not None and issubclass(connection_class, (AsyncSSLConnection, SSLConnection))
        return cls(host=kwargs.get("host") or "localhost", port=int(kwargs.get("port") or 6379),
                   path=kwargs.get("path"), db=int(kwargs.get("db") or 0), username=kwargs.get("username"),
                   password=kwargs.get("password"), tls=_tls_context(kwargs) if tls else None)


def _tls_context(kwargs: Mapping[str, Any]) -> ssl.SSLContext:
    """A default TLS context with what redis-py's ``ssl_*`` options change in it."""
    context = ssl.create_default_context(cafile=kwargs.get("ssl_ca_certs"), capath=kwargs.get("ssl_ca_path"),
                                         cadata=kwargs.get("ssl_ca_data"))
    reqs = kwargs.get("ssl_cert_reqs", ssl.CERT_REQUIRED)
    if isinstance(reqs, str):
        reqs = _CERT_REQS[reqs.lower()]
    if reqs != ssl.CERT_REQUIRED or not kwargs.get("ssl_check_hostname", True):
        context.check_hostname = False
    context.verify_mode = reqs
    if kwargs.get("ssl_min_version") is not None:
        context.minimum_version = kwargs["ssl_min_version"]
    if kwargs.get("ssl_ciphers"):
        context.set_ciphers(kwargs["ssl_ciphers"])
    if kwargs.get("ssl_certfile"):
        context.load_cert_chain(kwargs["ssl_certfile"], kwargs.get("ssl_keyfile"), kwargs.get("ssl_password"))
    return context


class _Link(asyncio.Protocol):
    """One connection: the FIFO of pending commands, the reply parser and the deadline timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, where: str,
                 forget: Callable[[_Link], None]) -> None:
        self.loop = loop
        self.timeout = timeout
        self.where = where
        self._forget = forget
        self.open = True  # False once closing or lost: no command may be written any more
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.guard: AsyncGenerator[None, None] | None = None
        self._reader = hiredis.Reader(protocolError=InvalidResponse, replyError=ResponseError)
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._deadlines: deque[float] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._queued: list[bytes] = []  # written at the end of this loop turn

    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Queue a packed command for this turn's write; the future gets its reply."""
        future = self.loop.create_future()
        if not self._queued:
            self.loop.call_soon(self._write)
        self._queued.append(command)
        self._waiting.append(future)
        self._deadlines.append(self.loop.time() + self.timeout)
        if self._timer is None:
            self._timer = self.loop.call_at(self._deadlines[0], self._check_deadline)
        return future

    def _write(self) -> None:
        queued, self._queued = self._queued, []
        if queued and self.open and self.transport is not None:
            self.transport.writelines(queued)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader, waiting, deadlines = self._reader, self._waiting, self._deadlines
        reader.feed(data)
        try:
            reply = reader.gets()
            while reply is not False:
                future = waiting.popleft()
                deadlines.popleft()
                if not future.done():  # else its caller was cancelled: the reply is dropped
                    if isinstance(reply, ResponseError):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
                reply = reader.gets()
        except InvalidResponse as exc:
            self.fail(InvalidResponse, f"Redis at {self.where} sent what is not RESP ({exc})")
        except IndexError:
            self.fail(InvalidResponse, f"Redis at {self.where} sent a reply no command was waiting for")

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself; connection_lost fails what is pending

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc is not None else ""
        self.fail(RedisConnectionError, f"Connection to Redis at {self.where} was lost{reason}")
        if not self.closed.done():
            self.closed.set_result(None)
        if self.guard is not None:
            _finish(self.guard)
        self._forget(self)

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._waiting:
            return
        head = self._deadlines[0]
        if head <= self.loop.time():
            self.fail(RedisTimeoutError, f"Redis at {self.where} did not answer in {self.timeout:g} s")
        else:
            self._timer = self.loop.call_at(head, self._check_deadline)

    def fail(self, kind: type[RedisError], message: str) -> None:
        """Fail every pending command with ``kind`` and drop the connection."""
        if self.open:
            self.open = False
            self._queued.clear()
            if self.transport is not None:
                self.transport.abort()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting = self._waiting
        while waiting:
            future = waiting.popleft()
            if not future.done():
                future.set_exception(kind(message))
        self._deadlines.clear()

    def close(self) -> None:
        """Close once what was written has been sent; pending commands fail when the connection ends."""
        if self.open:
            self._write()
            self.open = False
            if self.transport is not None:
                self.transport.close()


async def _closed_with_loop(link: _Link) -> AsyncGenerator[None, None]:
    """Held by a connection while it is open: a loop shutting down closes its open async generators
    (``shutdown_asyncgens``), and this one then closes the connection."""
    try:
        yield
    finally:
        link.close()


def _finish(guard: AsyncGenerator[None, None]) -> None:
    """End a connection's guard at once (its ``finally`` does not wait), so the loop has nothing left to close."""
    closing = cast(Any, guard.aclose())
    try:
        closing.send(None)
    except (StopIteration, RuntimeError):  # done; or being closed by the loop right now
        pass


class RedisWire:
    """Pipelined commands on one connection per event loop (see the module docstring)."""

    def __init__(self, endpoint: Endpoint, *, name: str | None = CLIENT_NAME, timeout: float = TIMEOUT_S,
                 connect_timeout: float = TIMEOUT_S) -> None:
        self.endpoint = endpoint
        self.name = name
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._links: dict[asyncio.AbstractEventLoop, _Link] = {}
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Task[_Link]] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisWire:
        return cls(Endpoint.from_url(url), **options)

    @classmethod
    def like(cls, client: aioredis.Redis, **options: Any) -> RedisWire:
        """A wire to the Redis, database and user a redis-py client uses."""
        return cls(Endpoint.of_client(client), **options)

    @property
    def where(self) -> str:
        return self.endpoint.where

    async def execute(self, *args: Arg) -> Any:
        """Send one command and return its reply (bytes, int, a list of them, or None)."""
        return await self._send(pack(args))

    async def run(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """Run a Lua script by its SHA1, sending its source when Redis does not have it."""
        try:
            return await self._send(_evalsha(script, keys, args))
        except ResponseError as exc:
            if not _noscript(exc):
                raise
        return await self._send(_eval(script, keys, args))

    async def run_many(self, script: Script, calls: Sequence[tuple[Sequence[Arg], Sequence[Arg]]]) -> list[Any]:
        """``run`` for each (keys, args), all written in one turn; the replies in order. An error reply is raised
        once every call has its reply."""
        replies = await asyncio.gather(*(self._send(_evalsha(script, keys, args)) for keys, args in calls),
                                       return_exceptions=True)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, ResponseError) and _noscript(reply)]
        if missing:
            again = await asyncio.gather(*(self._send(_eval(script, *calls[i])) for i in missing),
                                         return_exceptions=True)
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    def _send(self, command: bytes) -> Awaitable[Any]:
        link = self._links.get(asyncio.get_running_loop())
        if link is not None and link.open:
            return link.send(command)
        return self._send_connected(command)

    async def _send_connected(self, command: bytes) -> Any:
        link = await self._connected()
        return await link.send(command)

    async def _connected(self) -> _Link:
        """This loop's open connection; concurrent callers wait for the same connect."""
        loop = asyncio.get_running_loop()
        opening = self._opening.get(loop)
        if opening is None:
            opening = self._opening[loop] = loop.create_task(self._open(loop))
            opening.add_done_callback(lambda task: self._opened(loop, task))
        return await asyncio.shield(opening)

    def _opened(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[_Link]) -> None:
        self._opening.pop(loop, None)
        if not task.cancelled():
            task.exception()  # retrieved here too: every caller waiting for it may have been cancelled

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Link:
        for other in list(self._links):  # a copy: other threads' loops add and remove their own
            if other.is_closed():  # closed without shutting down: nothing left to close its connection with
                self._links.pop(other, None)
        end = self.endpoint
        link = _Link(loop, self.timeout, end.where, self._forget)
        if end.path is not None:
            connecting = loop.create_unix_connection(lambda: link, end.path, ssl=end.tls)
        else:
            connecting = loop.create_connection(lambda: link, end.host, end.port, ssl=end.tls)
        try:
            async with asyncio.timeout(self.connect_timeout):  # not wait_for: on 3.11 it can absorb a cancellation
                await connecting
        except TimeoutError:
            raise RedisTimeoutError(f"Redis at {end.where} did not accept a connection in "
                                    f"{self.connect_timeout:g} s") from None
        except OSError as exc:
            raise RedisConnectionError(f"Error connecting to Redis at {end.where}: {exc}") from None
        try:
            await self._hello(link)
            link.guard = _closed_with_loop(link)
            await anext(link.guard)
        except BaseException:
            link.close()
            raise
        self._links[loop] = link
        return link

    def _forget(self, link: _Link) -> None:
        if self._links.get(link.loop) is link:
            self._links.pop(link.loop, None)

    async def _hello(self, link: _Link) -> None:
        """AUTH, CLIENT SETNAME and SELECT, pipelined; a refusal closes the connection."""
        end = self.endpoint
        commands: list[list[Arg]] = []
        if end.password is not None:
            commands.append(["AUTH", end.username, end.password] if end.username else ["AUTH", end.password])
        if self.name:
            commands.append(["CLIENT", "SETNAME", self.name])
        if end.db:
            commands.append(["SELECT", end.db])
        replies = await asyncio.gather(*(link.send(pack(c)) for c in commands), return_exceptions=True)
        for command, reply in zip(commands, replies, strict=True):
            if isinstance(reply, ResponseError) and command[0] == "AUTH":
                raise AuthenticationError(f"Redis at {end.where} refused the credentials: {reply}")
            if isinstance(reply, BaseException):
                raise reply

    async def aclose(self) -> None:
        """Close this loop's connection; ask other live loops to close theirs."""
        current = asyncio.get_running_loop()
        links, self._links = self._links, {}
        for loop, link in links.items():
            if loop is current:
                link.close()
                await link.closed
            else:
                try:
                    loop.call_soon_threadsafe(link.close)
                except RuntimeError:  # that loop is closed
                    pass
