"""The pages of the web app, installed on a ``Web`` in this order (a module's ``install(web)`` adds its routes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contentmill.server.web.site import Web


def install(web: Web) -> None:
    from contentmill.server.web import dashboard, signin, studio

    web.add("GET", "/static", web.static, roles=None, prefix=True)
    signin.install(web)
    dashboard.install(web)
    studio.install(web)
