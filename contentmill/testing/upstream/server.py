"""One fake upstream: its routes wired into an aiohttp application, and the loop that serves them until a signal.

The package's ``__init__`` documents what it answers and how faults are injected.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aiohttp import web

from contentmill.metering import get_encoding
from contentmill.testing.upstream.batches import BatchApi
from contentmill.testing.upstream.common import Exchange
from contentmill.testing.upstream.config import UpstreamConfig
from contentmill.testing.upstream.errors import ApiError
from contentmill.testing.upstream.online import OnlineApi
from contentmill.testing.upstream.service import Service
from contentmill.testing.upstream.stats import Stats
from contentmill.testing.upstream.visuals import VisualsApi

MAX_BODY_BYTES = 32 * 1024 * 1024


class UpstreamServer:
    """The state and routes of one fake upstream; ``app()`` wires them into an aiohttp application."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self.service = Service(config)

    @property
    def stats(self) -> Stats:
        return self.service.stats

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        wrap = self.service.endpoint
        OnlineApi(self.service).routes(app, wrap)
        BatchApi(self.service, self.config.batch_delay_ms / 1000).routes(app, wrap)
        VisualsApi(self.service).routes(app, wrap)
        app.router.add_get("/stats", wrap(self._stats))
        app.router.add_post("/stats/reset", wrap(self._reset))
        app.router.add_route("*", "/{path:.*}", wrap(self._not_found))
        return app

    async def _stats(self, exchange: Exchange) -> web.StreamResponse:
        return web.json_response(self.stats.as_dict())

    async def _reset(self, exchange: Exchange) -> web.StreamResponse:
        self.stats.reset()
        return web.json_response(self.stats.as_dict())

    async def _not_found(self, exchange: Exchange) -> web.StreamResponse:
        request = exchange.request
        raise ApiError(404, f"Invalid URL ({request.method} {request.path})")


def base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def _announce(url: str) -> None:
    print(f"ready {url}", flush=True)


@contextmanager
def _stop_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGTERM or SIGINT, for as long as the block runs."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def serve(config: UpstreamConfig, on_ready: Callable[[str], None] = _announce) -> None:
    """Listen until SIGTERM or SIGINT; ``on_ready`` gets the base URL once the socket is bound."""
    runner = web.AppRunner(
        UpstreamServer(config).app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
    )
    get_encoding("o200k_base")  # current OpenAI models' encoding, loaded now rather than on the first request
    await runner.setup()
    try:
        with _stop_signals() as stop:
            await web.TCPSite(runner, config.host, config.port, backlog=1024).start()
            on_ready(base_url(config.host, runner.addresses[0][1]))
            await stop.wait()
    finally:
        await runner.cleanup()


