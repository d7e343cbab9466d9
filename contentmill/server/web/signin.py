"""The sign-in form (a key in, a session cookie out) and signing out."""

from __future__ import annotations

from contentmill.server.http import Answer, Request
from contentmill.server.web.site import Viewer, Web, form, local_path, query, redirect


def install(web: Web) -> None:
    async def signin_page(request: Request, viewer: Viewer | None) -> Answer:
        target = local_path(query(request).get("next"), "")
        if viewer is not None and target:
            return redirect(target)
        return web.render(request, viewer, "signin.html", target=target, failed=False)

    async def signin(request: Request, viewer: Viewer | None) -> Answer:
        fields = await form(request)
        secret = fields.get("key", "").strip()
        target = local_path(fields.get("next"), "")
        signed = await web.key_viewer(secret, "cookie") if secret else None
        if signed is None:
            return web.render(request, None, "signin.html", status=401, target=target, failed=True)
        return redirect(target or web.home(signed), (web.session_cookie(request, signed),))

    async def signout(request: Request, viewer: Viewer | None) -> Answer:
        return redirect("/signin", (web.session_cookie(request, None),))

    web.add("GET", "/signin", signin_page, roles=None)
    web.add("POST", "/signin", signin, roles=None)
    web.add("POST", "/signout", signout, roles=None)
    web.add("GET", "/signout", signout, roles=None)
