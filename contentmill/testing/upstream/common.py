"""What every route of the fake upstream shares: one request in flight, its JSON body's fields, and small helpers.

The lowest module of the package but for ``errors``: every other module may import it, and it imports none of
them but ``errors``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aiohttp import web

from contentmill.testing.upstream.errors import bad_request


@dataclass(slots=True)
class Exchange:
    """One request in flight: what the headers and the stats need to know about it."""

    request: web.Request
    request_id: str
    key: str | None = None
    model: str | None = None


Handler = Callable[[Exchange], Awaitable[web.StreamResponse]]
Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]
Wrap = Callable[[Handler], Endpoint]  # how a route's handler becomes an aiohttp endpoint (errors, headers)


@lru_cache(maxsize=4096)
def key_fingerprint(key: str) -> str:
    """How a key is shown anywhere (stats, errors): ``sk-...abcd``; short keys get a digest so nothing leaks."""
    prefix = key[:3] if key.startswith("sk-") else ""
    tail = key[-4:] if len(key) >= 20 else hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"{prefix}...{tail}"


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


async def sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


async def json_body(request: web.Request) -> Mapping[str, Any]:
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise bad_request(
            "We could not parse the JSON body of your request. The API expects a JSON payload.", code=None
        ) from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_type")
    return body


def required_str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise bad_request(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
    if not isinstance(value, str) or not value:
        raise bad_request(f"Invalid '{name}': expected a non-empty string.", name, "invalid_type")
    return value


def optional_int(body: Mapping[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise bad_request(f"Invalid '{name}': expected an integer of at least {minimum} (got {value!r}).", name)
    return value
