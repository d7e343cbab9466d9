"""The OpenAI-compatible HTTP face of the gateway, as a lean ASGI application.

It parses, authenticates and calls the same ``Gateway`` as the library: admission, budgets, the cache, retries,
fallbacks, metering and the ledger happen there, once. What this module adds is the wire: virtual keys (whose
team, project and user become the call's tags and whose own budget and rates become extra limits), model names
as clients send them, OpenAI's bodies and errors, streaming with disconnects billed, and the admin API.

Routes: ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``POST /v1/audio/speech``,
``POST /v1/images/generations``, ``GET /v1/models``,
the Batch API (``/v1/files``, ``/v1/batches``: server/batches.py), ``GET /healthz``, ``GET /metrics``, and with
``CONTENTMILL_ADMIN_KEY`` set, ``/admin/keys`` (server/admin.py; docs/server.md has them all). It stays one module:
each endpoint is a parse, a gateway call and an answer over the same key, model and tag handling, which is the
rest of the file; the Batch API, the admin API and the web pages, which have state of their own, live apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from contentmill.errors import ContentmillError, EngineError, ProviderError, UnknownModel
from contentmill.gateway import Gateway, Generation
from contentmill.gateway.policy import CallLimits, RateLimit, Scope
from contentmill.gateway.stream import TextStream
from contentmill.ids import ordered_id
from contentmill.ledger import Budget
from contentmill.ledger.records import check_tags
from contentmill.providers.resolve import configured
from contentmill.routing.config import load_routing_config
from contentmill.routing.router import RouteDecision, Router
from contentmill.routing.store import ROUTE_TAG
from contentmill.server.admin import Admin
from contentmill.server.batches import Batches
from contentmill.server.errors import INVALID_KEY, ApiError, api_error
from contentmill.server.http import JSON_TYPE, Answer, Receive, Request, Scope_, Send, json_answer
from contentmill.server.keys import KEY_TAG, KeyStore, VirtualKey
from contentmill.server.metrics import CONTENT_TYPE, Metrics
from contentmill.server.protocol import (
    BadBody,
    ChunkWriter,
    completion_body,
    embeddings_body,
    images_body,
    parse_chat,
    parse_embeddings,
    parse_images,
    parse_json,
    parse_speech,
)
from contentmill.server.web.pages import web_app
from contentmill.settings import Settings, get_settings

log = logging.getLogger("contentmill.server")

# A server process hands the GIL between threads (the ledger's writer, the router's, to_thread work) every
# SWITCH_INTERVAL_S instead of Python's 5 ms: a batch written to the ledger then delays the requests in flight by
# at most that (docs/benchmarks.md, "Server").
SWITCH_INTERVAL_S = 0.0005

REQUEST_TAG = "request"
SERVED = ("text", "speech", "embedding", "image")  # the modalities the server has routes for
RESERVED_TAGS = frozenset({"team", "project", "user", KEY_TAG, ROUTE_TAG, REQUEST_TAG})


def _error_answer(error: ApiError, request_id: str) -> Answer:
    headers = tuple((k.encode(), v.encode()) for k, v in error.headers.items())
    return Answer(error.status, orjson.dumps(error.body()), JSON_TYPE,
                  ((b"x-contentmill-request-id", request_id.encode()), *headers))


class Server:
    """The application state of one server process; ``app`` is the ASGI callable."""

    def __init__(self, settings: Settings | None = None, gateway: Gateway | None = None,
                 own_process: bool = False) -> None:
        """``own_process``: the process serves only this app (``contentmill serve``), which may tune it."""
        self.settings = settings or get_settings()
        self.own_process = own_process
        self._given_gateway = gateway
        self.gateway: Gateway | None = gateway
        self.keys: KeyStore | None = None
        self.router: Router | None = None
        self.metrics = Metrics()
        self._limits: dict[str, tuple[tuple[Any, ...], CallLimits]] = {}
        self._bare: dict[str, str] = {}
        self._usable: set[str] = set()  # models whose provider these settings can reach (base URL and key set)
        admin = self.settings.admin_key
        self.admin_key = admin.get_secret_value() if admin is not None and admin.get_secret_value() else None
        self.batches = Batches(self)
        self.admin = Admin(self)
        self.web = web_app(self)  # the pages beside the API: the dashboard at /, the studio
        self._routes: dict[tuple[str, str], Callable[[Request], Awaitable[Answer | None]]] = {
            ("GET", "/healthz"): self.healthz,
            ("GET", "/metrics"): self.metrics_page,
            ("GET", "/v1/models"): self.models,
            ("POST", "/v1/chat/completions"): self.chat,
            ("POST", "/v1/audio/speech"): self.speech,
            ("POST", "/v1/embeddings"): self.embeddings,
            ("POST", "/v1/images/generations"): self.images,
            ("POST", "/v1/files"): self.batches.upload,
            ("POST", "/v1/batches"): self.batches.create,
            ("GET", "/admin/keys"): self.admin.list,
            ("POST", "/admin/keys"): self.admin.create,
        }

    # -- lifespan --------------------------------------------------------------------------------------------

    async def startup(self) -> None:
        if self.gateway is None:
            self.gateway = Gateway(self.settings, settle_in_background=True)  # answers go out before settling
        self.gateway.store.migrate()
        self.keys = KeyStore(self.gateway.store)
        self.router = Router.for_gateway(self.gateway, load_routing_config(self.settings.routing_file))
        for name, info in self.gateway.catalog.models.items():
            bare = name.partition(":")[2]
            if info.modality in SERVED and (bare not in self._bare or name.startswith("openai:")):
                self._bare[bare] = name
            if info.modality in SERVED and configured(name, self.settings, self.gateway.catalog):
                self._usable.add(name)

    async def shutdown(self) -> None:
        self.batches.close()
        if self.router is not None:
            self.router.close()
        if self.gateway is not None and self._given_gateway is None:
            await self.gateway.aclose()

    # -- ASGI ------------------------------------------------------------------------------------------------

    async def app(self, scope: Scope_, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive, ordered_id()[:24], self.settings.server_max_body_bytes)
        path, method = scope["path"], scope["method"]
        handler = self._routes.get((method, path))
        if handler is None and path.startswith("/admin/keys/"):
            handler = self.admin.key
        elif handler is None and path.startswith(("/v1/files/", "/v1/batches/")):
            handler = self.batches.route
        elif handler is None:
            handler = self.web.handler(method, path)
        started = time.perf_counter()
        try:
            if handler is None:
                if any(p == path for _, p in self._routes):
                    raise ApiError(405, f"{method} is not a method of {path} (docs/server.md lists the routes)",
                                   "invalid_request_error", "method_not_allowed")
                raise ApiError(404, f"{path} is not a route of this server (docs/server.md lists them)",
                               "invalid_request_error", "not_found")
            answer = await handler(request)
        except asyncio.CancelledError:
            return  # the client went away before an answer; nothing is left to send
        except Exception as exc:  # every failure becomes an answer in OpenAI's shape, never a traceback
            error = api_error(exc)
            if error.status >= 500 and not isinstance(exc, ApiError | ContentmillError):
                log.exception("request %s failed", request.id)
            if error.status in (401, 403, 413, 429):
                self.metrics.refusals.labels(error.code or str(error.status)).inc()
            elif isinstance(exc, ProviderError | EngineError):  # a model call that failed after retries
                self.metrics.calls.labels(getattr(exc, "model", None) or "", request.team, "error").inc()
            answer = _error_answer(error, request.id)
        if answer is not None:  # None: a stream that answered for itself
            await self._send(send, answer, request.id)
            if answer.after is not None:
                answer.after()
            label = (None if (method, path) in self._routes else self.web.label(path)) or _route_label(
                path, handler is not None)
            self.metrics.requests.labels(label, str(answer.status)).inc()
        log.debug("%s %s in %.1f ms", method, path, (time.perf_counter() - started) * 1000)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except ContentmillError as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                if self.own_process:
                    tune_process()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _send(send: Send, answer: Answer, request_id: str) -> None:
        headers = [(b"content-type", answer.content_type), (b"content-length", str(len(answer.body)).encode())]
        if not any(k == b"x-contentmill-request-id" for k, _ in answer.headers):
            headers.append((b"x-contentmill-request-id", request_id.encode()))
        headers.extend(answer.headers)
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    # -- keys and models -------------------------------------------------------------------------------------

    async def authenticate(self, request: Request) -> VirtualKey:
        """The request's active key; missing, unknown, revoked and expired keys get the same 401."""
        auth = request.header(b"authorization") or ""
        scheme, _, secret = auth.partition(" ")
        if scheme.lower() != "bearer" or not secret:
            raise INVALID_KEY
        assert self.keys is not None
        key = self.keys.peek(secret.strip())
        if key is KeyStore.UNSEEN:
            key = await asyncio.to_thread(self.keys.lookup, secret.strip())
        if not isinstance(key, VirtualKey):
            raise INVALID_KEY
        request.team = key.team
        return key

    def is_admin(self, request: Request) -> bool:
        auth = request.header(b"authorization") or ""
        scheme, _, secret = auth.partition(" ")
        return (self.admin_key is not None and scheme.lower() == "bearer"
                and hmac.compare_digest(secret.strip().encode(), self.admin_key.encode()))

    def limits(self, key: VirtualKey) -> CallLimits:
        """The key's own budget and rates as claims scoped to ``vkey=<id>``; rebuilt when the key changes."""
        version = (key.budget_usd, key.period, key.rpm, key.tpm)
        held = self._limits.get(key.id)
        if held is not None and held[0] == version:
            return held[1]
        scope = Scope(KEY_TAG, key.id)
        budgets = (Budget(KEY_TAG, key.id, key.period, key.budget_usd),) if key.budget_usd else ()  # type: ignore[arg-type]
        rates: list[RateLimit] = []
        if key.rpm:
            rates.append(RateLimit(scope, "requests", float(key.rpm)))
        if key.tpm:
            rates.append(RateLimit(scope, "tokens", float(key.tpm)))
        limits = CallLimits(budgets, tuple(rates))
        self._limits[key.id] = (version, limits)
        return limits

    def allowed(self, key: VirtualKey, name: str, tier: str | None = None) -> bool:
        """Whether the key may call the catalog model ``name``; its list may name a model as clients do, bare
        (``gpt-4o-mini``) or with its provider (``openai:gpt-4o-mini``)."""
        return key.allows(name, tier) or self._bare.get(name.partition(":")[2]) == name and key.allows(
            name.partition(":")[2], tier)

    def catalog_name(self, asked: str) -> str:
        """``gpt-4o-mini`` or ``openai:gpt-4o-mini`` as the catalog names it."""
        assert self.gateway is not None
        if asked in self.gateway.catalog.models:
            return asked
        name = self._bare.get(asked)
        if name is None:
            raise UnknownModel(asked, list(self.gateway.catalog.models))
        return name

    async def choose(self, asked: str, key: VirtualKey, modality: str = "text"
                     ) -> tuple[str, tuple[str, ...], RouteDecision | None]:
        """The model to call, its fallbacks, and the route decision when the router chose (``auto``, ``tier:X``)."""
        if modality == "text" and (asked == "auto" or asked.startswith("tier:")):
            assert self.router is not None
            await self.router.refresh_if_stale()
            decision = self.router.choose("chat", None, tier=asked[5:] or None if asked != "auto" else None,
                                          tags=key.tags())
            allowed = [m for m in (decision.model, *decision.fallbacks)
                       if m in self._usable and self.allowed(key, m, decision.tier)]
            if not allowed:
                raise _not_allowed(asked)
            return allowed[0], tuple(allowed[1:]), decision
        name = self.catalog_name(asked)
        if not self.allowed(key, name):
            raise _not_allowed(asked)
        return name, (), None

    def tags(self, request: Request, key: VirtualKey) -> dict[str, str]:
        """The key's tags, the request id, and any ``x-contentmill-tags: k=v,k=v`` the client adds."""
        extra: dict[str, str] = {}
        raw = request.header(b"x-contentmill-tags")
        if raw:
            for pair in raw.split(","):
                name, sep, value = pair.partition("=")
                if not sep or not name.strip():
                    raise BadBody("x-contentmill-tags is k=v pairs separated by commas", "x-contentmill-tags")
                if name.strip() in RESERVED_TAGS:
                    raise BadBody(f"tag {name.strip()!r} comes from the key and cannot be set by a request",
                                  "x-contentmill-tags")
                extra[name.strip()] = value.strip()
            try:
                extra = check_tags(extra)
            except ContentmillError as exc:
                raise BadBody(str(exc), "x-contentmill-tags") from None
        return {**extra, **key.tags(), REQUEST_TAG: request.id}

    # -- routes ----------------------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Answer:
        return json_answer(200, {"status": "ok" if self.gateway is not None else "starting"})

    async def metrics_page(self, request: Request) -> Answer:
        if not self.is_admin(request):
            key = await self.authenticate(request)
            if key.role != "read":
                raise ApiError(403, "/metrics needs the admin key or a read-only key (role read)",
                               "permission_error", "read_key_required")
        return Answer(200, self.metrics.exposition(), CONTENT_TYPE.encode())

    async def models(self, request: Request) -> Answer:
        key = await self.authenticate(request)
        assert self.gateway is not None and self.router is not None
        names = [n for n, info in self.gateway.catalog.models.items()
                 if info.modality in SERVED and n in self._usable and self.allowed(key, n)]
        tiers = [f"tier:{t}" for t in self.router.config.tiers if not key.models or f"tier:{t}" in key.models]
        listed = [*(["auto"] if tiers else []), *tiers, *names]
        return json_answer(200, {"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": name.partition(":")[0] or "contentmill"}
            for name in listed]})

    def _answer_headers(self, request: Request, gen: Generation | None, decision: RouteDecision | None,
                        model: str) -> tuple[tuple[bytes, bytes], ...]:
        headers = [(b"x-contentmill-request-id", request.id.encode()), (b"x-contentmill-model", model.encode())]
        if gen is not None:
            headers += [(b"x-contentmill-cost-usd", f"{gen.cost_usd:.10f}".encode()),
                        (b"x-contentmill-cached", b"true" if gen.cached else b"false")]
        if decision is not None:
            headers.append((b"x-contentmill-route-decision", decision.id.encode()))
        return tuple(headers)

    def _options(self, request: Request, key: VirtualKey, model: str, fallbacks: tuple[str, ...],
                 tags: dict[str, str] | None = None) -> dict[str, Any]:
        """What every model call of a request hands the gateway: the model and its fallbacks, the key's tags and
        own limits, the client's cache switch, and how long to wait for capacity."""
        return {"model": model, "fallbacks": fallbacks, "tags": self.tags(request, key) if tags is None else tags,
                "limits": self.limits(key), "cache": self.caching(request),
                "wait_s": self.settings.server_admission_wait_s}

    def caching(self, request: Request) -> bool:
        return (request.header(b"x-contentmill-cache") or "on").lower() not in ("off", "false", "0", "no")

    @staticmethod
    def calling(key: VirtualKey) -> VirtualKey:
        """The key, if it may call models: a read-only key may not."""
        if key.role != "api":
            raise ApiError(403, "this key is read-only (role read): it can read /metrics, not call models",
                           "permission_error", "read_only_key")
        return key

    async def chat(self, request: Request) -> Answer | None:
        key = self.calling(await self.authenticate(request))
        call = parse_chat(parse_json(await request.body()), self.settings.server_default_max_tokens)
        model, fallbacks, decision = await self.choose(call.model, key)
        tags = self.tags(request, key)
        if decision is not None:
            tags[ROUTE_TAG] = decision.id
        assert self.gateway is not None
        options = self._options(request, key, model, fallbacks, tags)
        started = time.perf_counter()
        try:
            if call.stream:
                stream = await self.gateway.stream(call.request, **options)
            else:
                gen = await self.gateway.generate(call.request, **options)
        except ContentmillError:
            self._decided(decision)
            raise
        if call.stream:
            self._decided(decision, stream.request_id)
            await self._stream(request, stream, decision, call.include_usage, started)
            return None
        elapsed = time.perf_counter() - started

        def after() -> None:
            self._decided(decision, gen.request_id)
            self.metrics.observe(gen, elapsed)

        answer = json_answer(200, completion_body(gen, f"chatcmpl-{request.id}"),
                             self._answer_headers(request, gen, decision, gen.model))
        answer.after = after
        return answer

    def _decided(self, decision: RouteDecision | None, link: str | None = None) -> None:
        if decision is not None and self.router is not None:
            self.router.record(decision, link)

    async def _stream(self, request: Request, stream: TextStream, decision: RouteDecision | None,
                      include_usage: bool, started: float) -> None:
        """Pass the pieces on as they come; a client that goes away stops the stream, billed for what it got."""
        send: Send = request.scope["contentmill.send"]
        writer = ChunkWriter(f"chatcmpl-{request.id}", stream.model)
        task = asyncio.current_task()
        assert task is not None
        gone = asyncio.Event()

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            gone.set()
            task.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        status = "200"
        try:
            cached = b"true" if stream.generation is not None and stream.generation.cached else b"false"
            headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                       (b"x-accel-buffering", b"no"),  # a proxy in front (nginx) passes each piece on at once
                       *self._answer_headers(request, None, decision, stream.model),
                       (b"x-contentmill-cached", cached)]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": writer.role(), "more_body": True})
            try:
                async for piece in stream:
                    if piece.delta:
                        await send({"type": "http.response.body", "body": writer.piece(piece), "more_body": True})
            except ContentmillError as exc:
                status = "502"
                error = api_error(exc)
                await send({"type": "http.response.body", "body": ChunkWriter.error(error.body()),
                            "more_body": True})
            else:
                gen = stream.generation
                assert gen is not None
                tail = writer.finish(gen.finish_reason or "stop")
                if include_usage:
                    tail += writer.usage(gen.usage)
                await send({"type": "http.response.body", "body": tail + ChunkWriter.DONE, "more_body": True})
            watcher.cancel()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone.is_set():
                raise
            status = "499"
            task.uncancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream.aclose()
        finally:
            watcher.cancel()
            if stream.generation is not None:
                self.metrics.observe(stream.generation, time.perf_counter() - started,
                                     "ok" if status == "200" else "error")
            self.metrics.requests.labels("/v1/chat/completions", status).inc()

    async def embeddings(self, request: Request) -> Answer:
        key = self.calling(await self.authenticate(request))
        call = parse_embeddings(parse_json(await request.body()))
        model, fallbacks, decision = await self.choose(call.model, key, "embedding")
        assert self.gateway is not None
        started = time.perf_counter()
        gen = await self.gateway.embed(call.request, **self._options(request, key, model, fallbacks))
        self.metrics.observe(gen, time.perf_counter() - started)
        headers = self._answer_headers(request, gen, decision, gen.model)
        return json_answer(200, embeddings_body(gen, call.base64), headers)

    async def speech(self, request: Request) -> Answer:
        key = self.calling(await self.authenticate(request))
        call = parse_speech(parse_json(await request.body()))
        model, fallbacks, decision = await self.choose(call.model, key, "speech")
        assert self.gateway is not None
        started = time.perf_counter()
        gen = await self.gateway.speak(call.request, **self._options(request, key, model, fallbacks))
        self.metrics.observe(gen, time.perf_counter() - started)
        return Answer(200, gen.audio or b"", b"audio/wav", self._answer_headers(request, gen, decision, gen.model))

    async def images(self, request: Request) -> Answer:
        key = self.calling(await self.authenticate(request))
        call = parse_images(parse_json(await request.body()))
        model, fallbacks, decision = await self.choose(call.model, key, "image")
        assert self.gateway is not None
        started = time.perf_counter()
        gen = await self.gateway.image(call.request, **self._options(request, key, model, fallbacks))
        self.metrics.observe(gen, time.perf_counter() - started)
        return json_answer(200, images_body(gen), self._answer_headers(request, gen, decision, gen.model))


def _route_label(path: str, routed: bool) -> str:
    """The metrics label of a path: the route's pattern, so ids and unknown paths add no new series."""
    if not routed:
        return "unknown"
    for prefix, pattern in (("/admin/keys/", "/admin/keys/{id}"), ("/v1/files/", "/v1/files/{id}"),
                            ("/v1/batches/", "/v1/batches/{id}")):
        if path.startswith(prefix):
            return pattern
    return path


def _not_allowed(model: str) -> ApiError:
    return ApiError(403, f"this key may not use {model!r}; GET /v1/models lists the models it may use",
                    "permission_error", "model_not_allowed", "model")


def tune_process() -> None:
    """Once the app is built: the GIL handed between threads at SWITCH_INTERVAL_S, and everything made so far
    (modules, catalog, settings) frozen out of the garbage collector's sweeps, so a full collection no longer walks
    the whole import graph in the middle of a request."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None) -> Callable[[Scope_, Receive, Send], Awaitable[None]]:
    """The ASGI application (a factory, for uvicorn's ``--factory``)."""
    server = Server(settings, own_process=True)

    async def app(scope: Scope_, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["contentmill.send"] = send
        await server.app(scope, receive, send)

    app.server = server  # type: ignore[attr-defined]
    return app
