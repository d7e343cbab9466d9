"""Run the server: bind, start one or N worker processes under uvicorn, and say ``ready`` once it answers.

The socket is bound here, before any worker starts, so ``--port 0`` works and every worker shares one port;
``ready http://HOST:PORT/v1`` is printed once ``/healthz`` answers through that socket. Several workers share
limits and budgets through the data directory's admission file, or Redis when configured (which they also share
the cache through; without it each worker has its own memory tier over the shared local directory).
Workers run uvicorn on uvloop and httptools where installed (docs/benchmarks.md says why), each response sent
in one piece (server/wire.py).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable

import httpx
import uvicorn
from uvicorn.supervisors import Multiprocess

from contentmill.errors import ConfigError
from contentmill.settings import Settings

APP = "contentmill.server.app:create_app"
READY_TIMEOUT_S = 120.0


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _announce_when_ready(url: str, announce: Callable[[str], None], stop: threading.Event) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                if client.get(url + "/healthz").status_code == 200:
                    announce(url + "/v1")
                    return
            except httpx.HTTPError:
                pass
            stop.wait(0.05)


def _http_protocol() -> type[asyncio.Protocol] | str:
    """httptools with each response sent in one piece (server/wire.py), or h11 where httptools is missing."""
    if importlib.util.find_spec("httptools") is None:
        return "h11"
    from contentmill.server.wire import CoalescingHttpToolsProtocol

    return CoalescingHttpToolsProtocol


def config(sock: socket.socket, workers: int) -> uvicorn.Config:
    return uvicorn.Config(
        APP, factory=True, workers=workers, log_level="warning", access_log=False, server_header=False,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http=_http_protocol(),
        lifespan="on", timeout_graceful_shutdown=10, backlog=2048,
    )


def serve(settings: Settings, host: str, port: int, workers: int,
          announce: Callable[[str], None] = lambda url: print(f"ready {url}", flush=True)) -> None:
    """Serve until SIGINT or SIGTERM."""
    if workers < 1:
        raise ConfigError(f"--workers is at least 1 (got {workers})")
    sock = _bind(host, port)
    stop = threading.Event()
    watcher = threading.Thread(target=_announce_when_ready, args=(base_url(sock), announce, stop), daemon=True)
    metrics_dir = None
    if workers > 1:
        metrics_dir = tempfile.mkdtemp(prefix="contentmill-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        watcher.start()
        cfg = config(sock, workers)
        if workers == 1:
            uvicorn.Server(cfg).run(sockets=[sock])
        else:
            Multiprocess(cfg, sockets=[sock]).run()
    finally:
        stop.set()
        sock.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
