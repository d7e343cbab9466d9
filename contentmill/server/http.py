"""The two halves of one HTTP exchange as the server's handlers see them: a ``Request`` (headers, a body read
within a size cap) and an ``Answer`` (status, body, headers) that the ASGI layer sends."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson

from contentmill.server.errors import ApiError

Scope_ = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
JSON_TYPE = b"application/json"


@dataclass(slots=True)
class Request:
    scope: Scope_
    receive: Receive
    id: str
    max_body: int
    team: str = ""  # the key's team once authenticated, for the metrics of a call that failed

    def header(self, name: bytes) -> str | None:
        for key, value in self.scope["headers"]:
            if key == name:
                return str(value.decode("latin-1"))
        return None

    async def body(self, limit: int | None = None) -> bytes:
        """The whole body; over ``limit`` bytes (the server's body cap by default) it is a 413."""
        cap = self.max_body if limit is None else limit
        declared = self.header(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise too_large(cap, limit is not None)
        parts, size = [], 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise asyncio.CancelledError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                raise too_large(cap, limit is not None)
            parts.append(chunk)
            if not message.get("more_body"):
                return b"".join(parts)


def too_large(limit: int, upload: bool = False) -> ApiError:
    setting = "CONTENTMILL_SERVER_MAX_FILE_BYTES" if upload else "CONTENTMILL_SERVER_MAX_BODY_BYTES"
    return ApiError(413, f"the request body is over {limit} bytes ({setting})", "invalid_request_error",
                    "request_too_large")


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes
    content_type: bytes = JSON_TYPE
    headers: tuple[tuple[bytes, bytes], ...] = ()
    after: Callable[[], None] | None = None  # bookkeeping done once the answer has been sent


def json_answer(status: int, data: Any, headers: tuple[tuple[bytes, bytes], ...] = ()) -> Answer:
    return Answer(status, orjson.dumps(data), JSON_TYPE, headers)
