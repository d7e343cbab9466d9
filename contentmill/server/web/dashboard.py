"""The operators' dashboard at ``/`` (admin or read-only keys): spend over time by any tag with anomalies marked,
budgets with what they hold and their forecast, alerts, the largest calls, cache and reuse savings, routing
shares with each decision's explanation (``/decisions/<id>``), and the keys with their spend; the admin creates
and revokes keys here (``POST /keys``, ``POST /keys/<id>/revoke``). docs/web.md describes the page."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contentmill.errors import ContentmillError
from contentmill.ledger import LedgerStore
from contentmill.routing.store import find_decision
from contentmill.server.errors import ApiError
from contentmill.server.http import Answer, Request
from contentmill.server.keys import PERIODS, ROLES
from contentmill.server.web import overview
from contentmill.server.web.charts import colour, stacked_bars
from contentmill.server.web.overview import DIMENSIONS, Overview, Window, usd
from contentmill.server.web.overview import PERIODS as WINDOWS
from contentmill.server.web.site import OPERATORS, Role, Viewer, Web, form, query, redirect

ADMIN_ONLY: tuple[Role, ...] = ("admin",)


def amount(value: float) -> str:
    """A USD amount as a plain number (no sign, no separators) precise to well under a cent."""
    return f"{value:.2f}" if abs(value) >= 100 else f"{value:.6f}"


class Dashboard:
    def __init__(self, web: Web) -> None:
        self.web = web
        self._graph: Any = None  # the knowledge graph's store, opened on first use (None: there is none)
        self._graph_lock = threading.Lock()
        web.templates.filters.update(usd=usd, amount=amount, pct=lambda v: "-" if v is None else f"{100 * v:.1f}%")
        web.templates.globals["colour"] = colour

    @property
    def store(self) -> LedgerStore:
        gateway = self.web.server.gateway
        assert gateway is not None, "the server has not started"
        return gateway.store

    def _reuse(self, window: Window) -> dict[str, Any] | None:
        """The knowledge graph's reuse savings in the window, or None where no graph was ever written."""
        from contentmill.knowledge_graph.store import GraphStore, graph_url

        settings = self.web.server.settings
        url = graph_url(settings)
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            return None
        try:
            with self._graph_lock:  # two pages loading at once open it once
                if self._graph is None:
                    self._graph = GraphStore(url)
            savings: dict[str, Any] = self._graph.reuse_savings(window.since, window.until)
            return savings
        except ContentmillError:
            return None

    def _rest(self, window: Window, now: datetime) -> dict[str, Any]:
        """Keys, alerts, routing and reuse: read while the spend and the budgets are read in other threads."""
        store = self.store
        return {"alerts": overview.alerts(store, window), "large": overview.large_generations(store, window),
                "reuse": self._reuse(window), "routing": overview.routing(store, window),
                "keys": overview.key_views(store, self.web.keys.list(), now)}

    async def read(self, window: Window, now: datetime) -> Overview:
        """The page's three independent reads run side by side (database readers do not block each other)."""
        (spend, cache), found, parts = await asyncio.gather(
            asyncio.to_thread(overview.spend, self.store, window),
            asyncio.to_thread(overview.forecasts, self.store, now), asyncio.to_thread(self._rest, window, now))
        gateway = self.web.server.gateway
        budgets = await overview.budget_views(found, None if gateway is None else gateway.admission)
        return Overview(window, now, overview.with_key_names(spend, parts["keys"]), budgets=budgets, cache=cache,
                        **parts)

    async def page(self, request: Request, viewer: Viewer | None) -> Answer:
        now = datetime.now(UTC)
        window = overview.window_from(query(request), now)
        page = await self.read(window, now)
        chart = stacked_bars(page.spend.starts, page.spend.series, page.spend.anomalies, window.bucket)
        return self.web.render(request, viewer, "dashboard.html", o=page, chart=chart, windows=list(WINDOWS),
                               dimensions=DIMENSIONS, roles=ROLES, periods=PERIODS)

    async def decision(self, request: Request, viewer: Viewer | None) -> Answer:
        ident = request.scope["path"].removeprefix("/decisions/")
        row = await asyncio.to_thread(find_decision, self.store, ident) if ident else None
        if row is None:
            raise ApiError(404, f"no routing decision {ident!r}; the dashboard's routing card links to them",
                           "invalid_request_error", "not_found")
        dimensions = sorted({d for c in row["candidates"] for d in c.get("contributions", {})})
        return self.web.render(request, viewer, "decision.html", d=row, dimensions=dimensions)

    async def create_key(self, request: Request, viewer: Viewer | None) -> Answer:
        fields = await form(request)
        options: dict[str, Any] = {name: fields[name].strip() for name in ("name", "project", "user", "role",
                                                                             "period") if fields.get(name, "").strip()}
        budget = fields.get("budget_usd", "").strip()
        if budget:
            try:
                options["budget_usd"] = float(budget)
            except ValueError:
                raise ApiError(400, f"a key's budget is a number of USD, e.g. 25 (got {budget!r})",
                               "invalid_request_error", "invalid_value", "budget_usd") from None
        team = fields.get("team", "").strip()
        if not team:
            raise ApiError(400, "a key needs a team", "invalid_request_error", "invalid_value", "team")
        issued = await asyncio.to_thread(lambda: self.web.keys.create(team, **options))
        return self.web.render(request, viewer, "key_created.html", issued=issued)

    async def revoke_key(self, request: Request, viewer: Viewer | None) -> Answer:
        key_id, _, action = request.scope["path"].removeprefix("/keys/").partition("/")
        if action != "revoke" or not key_id:
            raise ApiError(404, f"{request.scope['path']} is not a page; revoke with POST /keys/<id>/revoke",
                           "invalid_request_error", "not_found")
        await asyncio.to_thread(self.web.keys.revoke, key_id)
        return redirect("/#keys")


def install(web: Web) -> None:
    dashboard = Dashboard(web)
    web.add("GET", "/", dashboard.page, roles=OPERATORS, nav="Dashboard")
    web.add("GET", "/decisions", dashboard.decision, roles=OPERATORS, prefix=True)
    web.add("POST", "/keys", dashboard.create_key, roles=ADMIN_ONLY)
    web.add("POST", "/keys", dashboard.revoke_key, roles=ADMIN_ONLY, prefix=True)
