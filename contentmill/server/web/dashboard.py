"""The operators' dashboard at ``/``: spend, budgets, alerts, cache, routing and keys (docs/web.md)."""

from __future__ import annotations

from contentmill.server.http import Answer, Request
from contentmill.server.web.site import OPERATORS, Viewer, Web


def install(web: Web) -> None:
    async def page(request: Request, viewer: Viewer | None) -> Answer:
        return web.render(request, viewer, "dashboard.html")

    web.add("GET", "/", page, roles=OPERATORS, nav="Dashboard")
