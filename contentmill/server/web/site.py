"""The web app's frame: a route registry, who is looking (bearer key or session cookie), pages rendered from
the package's templates, and the package's static files.

Pages register with ``web.add(method, path, handler, roles=...)`` (``prefix=True`` for a path and everything
under it); a handler gets the request and the viewer and returns an ``Answer``. A page a visitor may not see
answers the way a browser needs: no credentials sends a browser to the sign-in form (303) and anything else a
401, a key of the wrong role gets a 403 page. Requests that ask for JSON (``Accept: application/json``) get the
API's JSON errors instead of pages.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import mimetypes
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, quote

import jinja2

from contentmill.errors import ContentmillError
from contentmill.server.errors import ApiError, api_error
from contentmill.server.http import Answer, Request
from contentmill.server.keys import CACHE_S, KeyStore, VirtualKey
from contentmill.server.web.sessions import COOKIE, Sessions, fingerprint, load_secret

if TYPE_CHECKING:
    from contentmill.server.app import Server

log = logging.getLogger("contentmill.server.web")

Role = Literal["admin", "read", "api"]
OPERATORS: tuple[Role, ...] = ("admin", "read")  # who sees the dashboard
ANYONE_SIGNED_IN: tuple[Role, ...] = ("admin", "read", "api")
HTML = b"text/html; charset=utf-8"
FORM_MAX_BYTES = 64 * 1024
STATIC_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
# Everything comes from this server (no CDN); media may come from presigned object-store URLs.
PAGE_HEADERS = (
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; media-src 'self' https:; "
                                 b"style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: the admin (``key`` None) or a virtual key, through a bearer header or a session cookie."""

    role: Role
    key: VirtualKey | None
    via: Literal["bearer", "cookie"]

    @property
    def name(self) -> str:
        return "admin" if self.key is None else f"{self.key.name} ({self.key.team})"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


Handler = Callable[[Request, Viewer | None], Awaitable[Answer]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    roles: tuple[Role, ...] | None  # None: anyone, signed in or not
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class NavLink:
    title: str
    path: str
    roles: tuple[Role, ...]


def query(request: Request) -> dict[str, str]:
    """The query string's parameters (the last of a repeated name wins)."""
    return dict(parse_qsl(request.scope.get("query_string", b"").decode("latin-1")))


async def form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body's fields."""
    kind = (request.header(b"content-type") or "").partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise ApiError(415, "send the form as application/x-www-form-urlencoded", "invalid_request_error",
                       "unsupported_media_type")
    return dict(parse_qsl((await request.body(FORM_MAX_BYTES)).decode("utf-8", "replace")))


def wants_json(request: Request) -> bool:
    accept = request.header(b"accept") or ""
    return "application/json" in accept and "text/html" not in accept


def redirect(location: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> Answer:
    return Answer(303, b"", HTML, ((b"location", location.encode()), (b"cache-control", b"no-store"), *headers))


def local_path(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this server (never another site's URL), else ``default``."""
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(c) < 33 or ord(c) == 127 for c in target)):  # browsers drop tabs: "/\t/x" is "//x"
        return default
    return target


class Web:
    """The pages of one server: held by ``Server`` as ``server.web``, dispatched from its ``app``."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._exact: dict[tuple[str, str], Route] = {}
        self._by_path: dict[str, list[Route]] = {}
        self._prefixed: list[Route] = []
        self._nav: list[NavLink] = []
        self._static: dict[str, tuple[bytes, str]] = {}
        self._sessions: Sessions | None = None
        self._ids: dict[str, tuple[float, VirtualKey | None]] = {}  # sessions' keys by id, briefly
        admin = server.settings.admin_key
        self._admin = admin.get_secret_value() if admin is not None and admin.get_secret_value() else None

    # -- registry --------------------------------------------------------------------------------------------

    def add(self, method: str, path: str, handler: Handler, *, roles: Iterable[Role] | None = ANYONE_SIGNED_IN,
            prefix: bool = False, nav: str | None = None) -> None:
        """Serve ``method path`` (and, with ``prefix``, every path under ``path``) with ``handler``; ``roles``
        who may (None: anyone); ``nav`` puts a link to the page in the header for those roles."""
        allowed = None if roles is None else tuple(roles)
        route = Route(method.upper(), path, handler, allowed, prefix)
        if prefix:
            self._prefixed.append(route)
            self._prefixed.sort(key=lambda r: -len(r.path))
        elif (route.method, path) in self._exact:
            raise ValueError(f"{method} {path} is already a page")
        else:
            self._exact[(route.method, path)] = route
            self._by_path.setdefault(path, []).append(route)
        if nav is not None:
            self._nav.append(NavLink(nav, path, allowed or ANYONE_SIGNED_IN))

    def _routes_of(self, path: str) -> list[Route]:
        exact = self._by_path.get(path)
        return exact or [r for r in self._prefixed if path == r.path or path.startswith(r.path.rstrip("/") + "/")]

    def handler(self, method: str, path: str) -> Callable[[Request], Awaitable[Answer]] | None:
        """The callable that answers ``method path``, or None when no page has the path."""
        routes = self._routes_of(path)
        if not routes:
            return None
        route = next((r for r in routes if r.method == method or (method == "HEAD" and r.method == "GET")), None)

        async def answer(request: Request) -> Answer:
            if route is None:
                allowed = ", ".join(sorted({r.method for r in routes}))
                raise ApiError(405, f"{method} is not a method of {path} (it takes {allowed})",
                               "invalid_request_error", "method_not_allowed", headers={"allow": allowed})
            return await self._run(route, request)

        return answer

    def label(self, path: str) -> str | None:
        """The metrics label of a page's path: the route's pattern, so prefix routes add no series per file."""
        routes = self._routes_of(path)
        if not routes:
            return None
        return routes[0].path + ("/{path}" if routes[0].prefix and path != routes[0].path else "")

    def nav(self, viewer: Viewer | None) -> list[NavLink]:
        return [link for link in self._nav if viewer is not None and viewer.role in link.roles]

    def home(self, viewer: Viewer) -> str:
        """Where a viewer lands after signing in: the first page their role may see."""
        links = self.nav(viewer)
        return links[0].path if links else "/"

    # -- who is looking --------------------------------------------------------------------------------------

    @property
    def sessions(self) -> Sessions:
        if self._sessions is None:
            self._sessions = Sessions(load_secret(self.server.settings.data_dir))
        return self._sessions

    @property
    def keys(self) -> KeyStore:
        assert self.server.keys is not None, "the server has not started"
        return self.server.keys

    def is_admin_key(self, secret: str) -> bool:
        return self._admin is not None and hmac.compare_digest(secret.encode(), self._admin.encode())

    async def key_viewer(self, secret: str, via: Literal["bearer", "cookie"] = "bearer") -> Viewer | None:
        """The viewer a presented key makes: the admin key, or an active virtual key."""
        if self.is_admin_key(secret):
            return Viewer("admin", None, via)
        key = self.keys.peek(secret)
        if key is KeyStore.UNSEEN:
            key = await asyncio.to_thread(self.keys.lookup, secret)
        return Viewer(key.role, key, via) if isinstance(key, VirtualKey) else None

    def fingerprint(self, viewer: Viewer) -> str:
        if viewer.key is None:
            return fingerprint("admin", self._admin)
        return fingerprint(viewer.key.id, viewer.key.hint, viewer.key.rotated_at)

    async def viewer(self, request: Request) -> Viewer | None:
        """The bearer key's viewer (a bad one is a 401), else the session cookie's, else None."""
        auth = request.header(b"authorization")
        if auth:
            scheme, _, secret = auth.partition(" ")
            found = await self.key_viewer(secret.strip()) if scheme.lower() == "bearer" and secret.strip() else None
            if found is None:
                raise ApiError(401, "invalid key: send 'Authorization: Bearer <key>' with an active key, or sign "
                                    "in at /signin", "invalid_request_error", "invalid_api_key")
            return found
        value = cookies(request).get(COOKIE)
        return await self._session_viewer(value) if value else None

    async def _session_viewer(self, value: str) -> Viewer | None:
        principal = Sessions.principal(value)
        if principal is None:
            return None
        if principal == "admin":
            viewer = Viewer("admin", None, "cookie") if self._admin is not None else None
        else:
            key = await self._key(principal)
            viewer = Viewer(key.role, key, "cookie") if key is not None and key.state() == "active" else None
        if viewer is None or not self.sessions.check(value, self.fingerprint(viewer)):
            return None
        return viewer

    async def _key(self, key_id: str) -> VirtualKey | None:
        """The key a session names, remembered as long as ``KeyStore`` trusts a lookup (``CACHE_S``: a revoked
        key's sessions end within it everywhere), so a page's media and static requests do not each ask the
        database."""
        now = time.monotonic()
        seen = self._ids.get(key_id)
        if seen is not None and now - seen[0] < CACHE_S:
            return seen[1]
        try:
            key: VirtualKey | None = await asyncio.to_thread(self.keys.get, key_id)
        except ContentmillError:
            key = None
        if len(self._ids) > 10_000:
            self._ids.clear()
        self._ids[key_id] = (now, key)
        return key

    def session_cookie(self, request: Request, viewer: Viewer | None) -> tuple[bytes, bytes]:
        """``Set-Cookie`` starting a session for ``viewer``, or (None) ending the one the browser has."""
        secure = "; Secure" if _https(request) else ""
        if viewer is None:
            value, age = "", 0
        else:
            principal = "admin" if viewer.key is None else viewer.key.id
            value, age = self.sessions.issue(principal, self.fingerprint(viewer)), self.sessions.lifetime_s
        cookie = f"{COOKIE}={value}; Path=/; Max-Age={age}; HttpOnly; SameSite=Strict{secure}"
        return b"set-cookie", cookie.encode()

    # -- running a page --------------------------------------------------------------------------------------

    async def _run(self, route: Route, request: Request) -> Answer:
        try:
            viewer = await self.viewer(request)
            if route.roles is not None:
                if viewer is None:
                    if request.scope["method"] in ("GET", "HEAD") and not wants_json(request):
                        target = request.scope["path"]
                        if request.scope.get("query_string"):
                            target += "?" + request.scope["query_string"].decode("latin-1")
                        return redirect("/signin?next=" + quote(target, safe="/"))
                    raise ApiError(401, "sign in at /signin, or send 'Authorization: Bearer <key>'",
                                   "invalid_request_error", "invalid_api_key")
                if viewer.role not in route.roles:
                    raise ApiError(403, f"a key of role {viewer.role} cannot open {route.path} "
                                        f"(it needs {' or '.join(route.roles)})", "permission_error", "wrong_role")
            if request.scope["method"] == "POST" and viewer is not None and viewer.via == "cookie":
                _same_origin(request)
            return await route.handler(request, viewer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if wants_json(request):
                raise
            error = api_error(exc)
            if error.status >= 500 and not isinstance(exc, ApiError | ContentmillError):
                log.exception("page %s failed (request %s)", request.scope["path"], request.id)
            headers = tuple((k.encode(), v.encode()) for k, v in error.headers.items())
            return self.render(request, None, "error.html", status=error.status, headers=headers,
                               message=error.message, signin=error.status == 401)

    # -- templates and static files --------------------------------------------------------------------------

    @cached_property
    def templates(self) -> jinja2.Environment:
        env = jinja2.Environment(loader=jinja2.PackageLoader("contentmill.server.web", "templates"),
                                 autoescape=jinja2.select_autoescape(("html", "svg")), trim_blocks=True,
                                 lstrip_blocks=True, undefined=jinja2.StrictUndefined)
        env.globals["static"] = self.static_url
        return env

    def render(self, request: Request, viewer: Viewer | None, template: str, *, status: int = 200,
               headers: Iterable[tuple[bytes, bytes]] = (), **context: Any) -> Answer:
        """A page from ``templates/<template>`` (extending base.html), with the header's links for ``viewer``."""
        body = self.templates.get_template(template).render(viewer=viewer, nav=self.nav(viewer),
                                                            path=request.scope["path"], **context)
        return Answer(status, body.encode(), HTML, (*PAGE_HEADERS, *headers))

    def _static_file(self, name: str) -> tuple[bytes, str] | None:
        if name not in self._static:
            if not STATIC_NAME.match(name):
                return None
            resource = resources.files("contentmill.server.web").joinpath("static", name)
            if not resource.is_file():
                return None
            data = resource.read_bytes()
            self._static[name] = (data, hashlib.sha256(data).hexdigest()[:16])
        return self._static[name]

    def static_url(self, name: str) -> str:
        """``/static/<name>?v=<hash of its bytes>``: a URL that changes with the file, so it may be kept a year."""
        found = self._static_file(name)
        if found is None:
            raise ValueError(f"no static file {name!r} in contentmill/server/web/static")
        return f"/static/{name}?v={found[1]}"

    async def static(self, request: Request, viewer: Viewer | None) -> Answer:
        name = request.scope["path"].removeprefix("/static/")
        found = self._static_file(name)
        if found is None:
            raise ApiError(404, f"no static file {name!r}", "invalid_request_error", "not_found")
        data, version = found
        etag = f'"{version}"'.encode()
        versioned = query(request).get("v") == version
        cache = b"public, max-age=31536000, immutable" if versioned else b"public, max-age=300"
        headers = ((b"etag", etag), (b"cache-control", cache), (b"x-content-type-options", b"nosniff"))
        if (request.header(b"if-none-match") or "").encode() == etag:
            return Answer(304, b"", b"text/plain", headers)
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "image/svg+xml"):
            kind += "; charset=utf-8"
        return Answer(200, data, kind.encode(), headers)


def cookies(request: Request) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in (request.header(b"cookie") or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            found.setdefault(name, value)
    return found


def _https(request: Request) -> bool:
    return request.scope.get("scheme") == "https" or (request.header(b"x-forwarded-proto") or "") == "https"


def _same_origin(request: Request) -> None:
    """A form posted with a session cookie must come from this server's own pages (SameSite=Strict is the first
    guard; this is the second, for browsers that ignore it)."""
    origin = request.header(b"origin")
    if origin is None:  # not sent by older browsers nor by scripts
        return
    host = request.header(b"x-forwarded-host") or request.header(b"host") or ""  # a proxy may rewrite Host
    if origin.partition("://")[2] != host.partition(",")[0].strip():
        raise ApiError(403, "this form was sent from another site; open the page on this server and send it again",
                       "permission_error", "cross_site_form")
