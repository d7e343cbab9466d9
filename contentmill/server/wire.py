"""uvicorn's httptools protocol with one change: what a response writes in one turn of the event loop leaves in
one send.

uvicorn writes a response's status line and headers when the app sends ``http.response.start`` and its body on
``http.response.body``: two sends, so the client wakes twice for every answer (on two cores shared with the
client, the upstream and Redis, a wake-up is dear). Here the transport queues the writes of one turn and sends
them together at the end of it (``writelines``: one ``writev``); nothing waits for a later event, so streamed
pieces still leave as they come. Closing sends what is queued first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _CoalescingTransport:
    """A transport whose writes of one loop turn go out as one send; everything else is the transport's own."""

    __slots__ = ("_transport", "_loop", "_queued")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._queued: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._queued:
            self._loop.call_soon(self._send)
        self._queued.append(data)

    def _send(self) -> None:
        queued, self._queued = self._queued, []
        if queued and not self._transport.is_closing():
            self._transport.writelines(queued)

    def close(self) -> None:
        self._send()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol over a coalescing transport (``contentmill serve`` uses it when httptools is there)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
