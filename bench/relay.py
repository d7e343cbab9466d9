"""A byte relay: every connection to ``--port`` is joined to a new connection to ``--to HOST:PORT`` and bytes pass
both ways untouched (no HTTP parsing, no logic), on uvloop with ``asyncio.Protocol``.

bench/server.py runs it between the client and the fake upstream as the ``relay`` peer: what it adds over a
direct call is the floor any proxy pays on the machine (one more process, two more hops each way), so a
gateway's own share is its figure less the relay's.

Usage: ``python bench/relay.py --port 9000 --to 127.0.0.1:8000``; prints ``ready`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
from typing import cast

import uvloop


class Side(asyncio.Protocol):
    """One end of a joined pair; what it reads is written to its peer, and a close on one side closes both."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Side | None = None
        self.pending: list[bytes] = []  # read before the peer's connection was open

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def join(self, peer: Side) -> None:
        self.peer, peer.peer = peer, self
        assert self.transport is not None
        for chunk in peer.pending:
            self.transport.write(chunk)
        peer.pending.clear()

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.pending.append(data)
        else:
            peer.transport.write(data)

    def pause_writing(self) -> None:  # the peer reads no faster than this side can write
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        peer, self.peer = self.peer, None
        if peer is not None and peer.transport is not None:
            peer.peer = None
            peer.transport.close()


async def serve(port: int, host: str, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()

    def accepted() -> Side:
        side = Side()
        loop.create_task(connect(side))
        return side

    async def connect(side: Side) -> None:
        try:
            transport, upstream = await loop.create_connection(Side, host, upstream_port)
        except OSError:
            if side.transport is not None:
                side.transport.close()
            return
        if side.transport is None or side.transport.is_closing():  # the client left meanwhile
            transport.close()
            return
        upstream.join(side)

    server = await loop.create_server(accepted, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--to", required=True, help="the upstream's HOST:PORT")
    options = parser.parse_args()
    host, _, port = options.to.rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(options.port, host, int(port)))


if __name__ == "__main__":
    main()
