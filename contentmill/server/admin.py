"""The admin API: virtual keys created, listed, read, revoked and rotated over HTTP, as ``contentmill keys`` does.

Off (404) unless ``CONTENTMILL_ADMIN_KEY`` is set, and then only for a bearer of that key: no key or an unknown
one gets the same 401 as anywhere else; a working virtual key that is not the admin key gets 403, since it is
known but not allowed. A key's secret is shown once, in the answer that creates or rotates it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING

from contentmill.server.errors import ApiError
from contentmill.server.http import Answer, Request, json_answer
from contentmill.server.keys import KeyStore
from contentmill.server.protocol import BadBody, parse_json

if TYPE_CHECKING:
    from contentmill.server.app import Server

FIELDS = frozenset({"team", "name", "project", "user", "role", "budget_usd", "period", "rpm", "tpm", "models",
                    "expires_at"})


class Admin:
    def __init__(self, server: Server) -> None:
        self.server = server

    async def _keys(self, request: Request) -> KeyStore:
        server = self.server
        if server.admin_key is None:
            raise ApiError(404, "the admin API is off: set CONTENTMILL_ADMIN_KEY to turn it on",
                           "invalid_request_error", "not_found")
        if not server.is_admin(request):
            await server.authenticate(request)  # an unknown key: the uniform 401
            raise ApiError(403, "this key is not the admin key: the admin API needs "
                           "'Authorization: Bearer <CONTENTMILL_ADMIN_KEY>'", "permission_error",
                           "admin_key_required")
        assert server.keys is not None
        return server.keys

    async def list(self, request: Request) -> Answer:
        keys = await self._keys(request)
        listed = await asyncio.to_thread(keys.list)
        return json_answer(200, {"object": "list", "data": [k.as_dict() for k in listed]})

    async def create(self, request: Request) -> Answer:
        keys = await self._keys(request)
        body = parse_json(await request.body())
        unknown = sorted(set(body) - FIELDS)
        if unknown:
            raise BadBody(f"unknown field {unknown[0]!r}; a key takes {', '.join(sorted(FIELDS))}", unknown[0])
        team = body.get("team")
        if not isinstance(team, str) or not team:
            raise BadBody("'team' is required", "team")
        options = {k: v for k, v in body.items() if k not in ("team", "expires_at")}
        expires = body.get("expires_at")
        if expires is not None:
            try:
                options["expires_at"] = datetime.fromisoformat(str(expires))
            except ValueError:
                raise BadBody("'expires_at' is an ISO 8601 time with a zone, e.g. 2027-01-01T00:00:00Z",
                              "expires_at") from None
        try:
            issued = await asyncio.to_thread(lambda: keys.create(team, **options))
        except TypeError as exc:
            raise BadBody(f"a field has the wrong type: {exc}") from None
        return json_answer(201, issued.as_dict())

    async def key(self, request: Request) -> Answer:
        """``GET /admin/keys/{id}``, ``POST /admin/keys/{id}/revoke`` and ``.../rotate``."""
        keys = await self._keys(request)
        rest = request.scope["path"][len("/admin/keys/"):]
        key_id, _, action = rest.partition("/")
        method = request.scope["method"]
        if method == "GET" and not action:
            return json_answer(200, (await asyncio.to_thread(keys.get, key_id)).as_dict())
        if method == "POST" and action == "revoke":
            return json_answer(200, (await asyncio.to_thread(keys.revoke, key_id)).as_dict())
        if method == "POST" and action == "rotate":
            return json_answer(200, (await asyncio.to_thread(keys.rotate, key_id)).as_dict())
        raise ApiError(404, f"{method} {request.scope['path']} is not a route of this server", "invalid_request_error",
                       "not_found")
