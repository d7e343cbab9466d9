"""The pages of the web app, installed on a new ``Web`` in this order (a module's ``install(web)`` adds its routes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from contentmill.server.web import dashboard, signin, studio
from contentmill.server.web.site import Web

if TYPE_CHECKING:
    from contentmill.server.app import Server


def web_app(server: Server) -> Web:
    """The server's web app: static files, sign-in, the dashboard and the studio."""
    web = Web(server)
    web.add("GET", "/static", web.static, roles=None, prefix=True)
    signin.install(web)
    dashboard.install(web)
    studio.install(web)
    return web
