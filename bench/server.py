"""`contentmill serve` against the same calls made directly, and against LiteLLM's proxy and Portkey's gateway.

One run, one fake upstream (``contentmill.testing.upstream``, 0 ms latency), the official ``openai`` SDK as the
only client (``AsyncOpenAI``, ``max_retries=0``, on uvloop), and these peers, all started by this script:

    direct                 the fake upstream called directly: the baseline every figure is compared with
    relay                  a byte relay in front of it (bench/relay.py: uvloop, no parsing, no logic): the floor
                           any proxy pays here, one more process and two more hops each way
    contentmill_embedded   contentmill serve, 1 worker, the embedded profile's admission (no Redis)
    contentmill_redis      contentmill serve, 1 worker, admission on Redis
    contentmill_redis_2w   contentmill serve --workers 2, admission on Redis
    contentmill_granian    the same ASGI app (1 worker, embedded admission) under granian instead of uvicorn
    contentmill_h11        the same under uvicorn's pure-Python choices: the asyncio loop and h11
    contentmill_baseline   contentmill serve from another checkout (``--baseline-tree``), 1 worker, Redis: a
                           change's before and after in one run
    litellm_proxy          LiteLLM's proxy (``litellm --config``), 1 worker
    portkey                Portkey's open-source gateway under node (npm ``@portkey-ai/gateway``, in bench/node)

Every request asks for a new prompt, and contentmill's requests say ``x-contentmill-cache: off``, so every one
reaches the upstream (the upstream's counters per API key check it). The peers are measured in rounds that
alternate between them, so a disturbance of the shared machine spreads over all of them. Figures (one JSON line
each): added latency p50/p99 at concurrency 1 over the direct call, throughput at 64 concurrent clients as a
ratio to the direct one (the median of the rounds' ratios), the server's RSS (MB, summed over its processes) and
its CPU per request (user + system time of its processes, children included, over the 64-client phase), with
Redis's and the client's own CPU per request beside it. Peers that cannot start are reported as skipped, with the
reason. The client, the upstream, Redis and the server share the machine's cores.

Usage: ``python bench/server.py [--requests 2000] [--only contentmill_redis,portkey] [--rounds 8] [--keep]``
(needs Redis on 127.0.0.1:6379 for the Redis peers; LiteLLM's proxy, granian and npm are optional). Every
process started here is stopped at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import openai

from contentmill.testing.harness import Served, start_gateway_server, start_upstream
from contentmill.testing.upstream import key_fingerprint

MODEL = "gpt-4o-mini"
CLIENTS = 64
REDIS_URL = os.environ.get("CONTENTMILL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
NODE_DIR = Path(__file__).resolve().parent / "node"
PORTKEY_ENTRY = NODE_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 120.0
IDLE_S = 5.0
# Before each phase at concurrency 1 the peers and Redis are let go quiet (under QUIET_SHARE of a core over
# QUIET_WINDOW_S, waiting at most QUIET_LIMIT_S): what the previous peer's 64-client phase left running is not
# measured as the next peer's latency, and it is counted in that phase's CPU.
QUIET_SHARE, QUIET_WINDOW_S, QUIET_LIMIT_S = 0.05, 0.2, 10.0
EMBEDDED = "embedded"  # which one (in memory, or the data directory's SQLite file) is told after the run
PEERS = ("direct", "relay", "contentmill_embedded", "contentmill_redis", "contentmill_redis_2w", "contentmill_granian",
         "contentmill_h11", "contentmill_baseline", "litellm_proxy", "portkey")
# Far above what the run asks, so the gateway admits every call at once and the figures are pure overhead.
CATALOG = "models:\n  openai:gpt-4o-mini: {rpm: 100000000, tpm: 100000000000}\n"
counter = itertools.count()


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "server", **fields}), flush=True)


class Skipped(Exception):
    """A peer that could not be started or could not answer; the message says why."""


# -- processes -------------------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from the 3rd (state) on: the name may hold spaces


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            root = psutil.Process(pid)
            return [pid, *(child.pid for child in root.children(recursive=True))]
        except psutil.Error:
            return []
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system time of ``pid``'s tree, with what its finished children used (``cutime``, ``cstime``)."""
    ticks = 0
    for member in process_tree(pid):
        fields = _stat(member)
        if fields is not None:
            ticks += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> tuple[float, int]:
    """Resident memory summed over ``pid``'s tree (shared pages count once per process), and how many."""
    total_kb, members = 0, process_tree(pid)
    for member in members:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024, len(members)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Launched:
    """A server started here in its own session, logging to a file; ``stop()`` ends its whole process group."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], logs: Path, cwd: Path | None = None):
        self.name = name
        self.log_path = logs / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 6) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def wait_http(self, url: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """Return once ``url`` answers with any HTTP status; Skipped if the process exits or never answers."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise Skipped(f"exited with code {self.process.returncode}: {self.tail()}")
                try:
                    client.get(url)
                    return
                except httpx.TransportError:
                    time.sleep(0.2)
        raise Skipped(f"did not answer within {timeout_s:g} s: {self.tail()}")

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL to whatever of it is left after 10 s."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10.0)
        while time.monotonic() < deadline and _group_alive(self.process.pid):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5.0)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# -- peers ---------------------------------------------------------------------------------------------------


@dataclass
class Peer:
    name: str
    base_url: str
    api_key: str
    upstream_key: str  # the key the upstream sees for this peer's calls: its counters check every call got there
    pid: int
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""
    data_dir: Path | None = None  # contentmill's CONTENTMILL_DATA_DIR
    client: openai.AsyncOpenAI | None = None
    latencies: list[float] = field(default_factory=list)
    burst_s: float = 0.0
    round_rps: list[float] = field(default_factory=list)  # requests/s of each round's 64-client phase
    burst_requests: int = 0
    burst_cpu_s: float = 0.0
    burst_client_cpu_s: float = 0.0  # this process: the openai SDK's share of the same two cores
    burst_redis_cpu_s: float | None = None  # redis-server's, for the peers that admit calls on Redis
    redis: bool = False
    idle_cpu_pct: float = 0.0
    single_cpu_s: float = 0.0
    settle_s: list[float] = field(default_factory=list)  # how long the machine took to go quiet after each burst
    sent: int = 0
    errors: int = 0
    first_error: str = ""


class Bench:
    def __init__(self, work: Path, baseline_tree: Path | None = None) -> None:
        self.work = work
        self.baseline_tree = baseline_tree  # the checkout contentmill_baseline runs
        self.logs = work / "logs"
        self.logs.mkdir()
        self.stops: list[Callable[[], object]] = []
        self.redis_prefixes: list[str] = []
        self.upstream: Served | None = None
        self.key_serial = itertools.count(1000)

    def upstream_key(self, name: str) -> str:
        return f"sk-bench-{name}-{next(self.key_serial):04d}"

    def start_upstream(self) -> Served:
        upstream = start_upstream("--latency-ms", "0")
        self.stops.append(upstream.stop)
        self.upstream = upstream
        return upstream

    # contentmill ------------------------------------------------------------------------------------------------

    def contentmill_env(self, name: str, upstream_key: str, redis: bool, tree: Path | None = None
                        ) -> dict[str, str]:
        data = self.work / name
        data.mkdir()
        catalog = data / "catalog.yaml"
        catalog.write_text(CATALOG)
        assert self.upstream is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTMILL_")}
        env.update({
            "CONTENTMILL_DATA_DIR": str(data), "CONTENTMILL_CATALOG_FILE": str(catalog),
            "OPENAI_BASE_URL": self.upstream.base_url, "OPENAI_API_KEY": upstream_key,
            "CONTENTMILL_MONITOR_INTERVAL_S": "0", "CONTENTMILL_LOG_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        })
        if tree is not None:
            env["PYTHONPATH"] = str(tree)
        if redis:
            prefix = f"bench-server:{uuid.uuid4().hex[:12]}:"
            self.redis_prefixes.append(prefix)
            env.update({"CONTENTMILL_REDIS_URL": REDIS_URL, "CONTENTMILL_REDIS_PREFIX": prefix})
        return env

    def virtual_key(self, env: dict[str, str]) -> str:
        done = subprocess.run([sys.executable, "-m", "contentmill.cli", "keys", "create", "--team", "bench", "--json"],
                              env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise Skipped(f"contentmill keys create failed: {done.stderr.strip() or done.stdout.strip()}")
        return str(json.loads(done.stdout)["key"])

    def contentmill(self, name: str, redis: bool, workers: int, tree: Path | None = None) -> Peer:
        upstream_key = self.upstream_key(name)
        env = self.contentmill_env(name, upstream_key, redis, tree)
        if redis:
            try:
                import redis as redis_client

                redis_client.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
            except Exception as exc:
                raise Skipped(f"no Redis at {REDIS_URL}: {exc}") from None
        key = self.virtual_key(env)
        args = ["--workers", str(workers)] if workers > 1 else []
        try:
            server = start_gateway_server(env, *args)
        except Exception as exc:
            raise Skipped(f"contentmill serve did not start: {exc}") from None
        self.stops.append(functools.partial(self._stop_served, name, server))
        note = f"uvicorn (uvloop, httptools), {workers} worker{'s' if workers > 1 else ''}, admission " + (
            "on Redis" if redis else EMBEDDED) + (f", from {_commit(tree)}" if tree is not None else "")
        return Peer(name, server.base_url, key, upstream_key, server.process.pid,
                    {"x-contentmill-cache": "off"}, note, redis=redis, data_dir=Path(env["CONTENTMILL_DATA_DIR"]))

    def uvicorn_h11(self, name: str) -> Peer:
        upstream_key = self.upstream_key(name)
        env = self.contentmill_env(name, upstream_key, redis=False)
        key = self.virtual_key(env)
        port = free_port()
        command = [sys.executable, "-m", "uvicorn", "--factory", "--host", "127.0.0.1", "--port", str(port), "--loop",
                   "asyncio", "--http", "h11", "--no-access-log", "--log-level", "warning", "--no-server-header",
                   "contentmill.server.app:create_app"]
        launched = Launched(name, command, env, self.logs)
        self.stops.append(launched.stop)
        root = f"http://127.0.0.1:{port}"
        launched.wait_http(root + "/healthz")
        return Peer(name, root + "/v1", key, upstream_key, launched.pid, {"x-contentmill-cache": "off"},
                    f"uvicorn (asyncio loop, h11), 1 worker, admission {EMBEDDED}",
                    data_dir=Path(env["CONTENTMILL_DATA_DIR"]))

    def granian(self, name: str) -> Peer:
        executable = BIN / "granian"
        if not executable.exists():
            raise Skipped("granian is not installed (pip install granian, or the bench extra)")
        upstream_key = self.upstream_key(name)
        env = self.contentmill_env(name, upstream_key, redis=False)
        key = self.virtual_key(env)
        port = free_port()
        launched = Launched(name, [str(executable), "--interface", "asgi", "--factory", "--host", "127.0.0.1",
                                   "--port", str(port), "--workers", "1", "--loop", "uvloop", "--http", "1", "--no-ws",
                                   "--log-level", "warning", "contentmill.server.app:create_app"], env, self.logs)
        self.stops.append(launched.stop)
        root = f"http://127.0.0.1:{port}"
        launched.wait_http(root + "/healthz")
        return Peer(name, root + "/v1", key, upstream_key, launched.pid, {"x-contentmill-cache": "off"},
                    f"granian (uvloop), 1 worker, admission {EMBEDDED}", data_dir=Path(env["CONTENTMILL_DATA_DIR"]))

    # peers ---------------------------------------------------------------------------------------------------

    def litellm_proxy(self, name: str) -> Peer:
        executable = BIN / "litellm"
        if not executable.exists():
            raise Skipped("litellm is not installed (the bench extra installs it and its proxy's requirements)")
        needed = ("fastapi", "backoff", "apscheduler", "expression", "opentelemetry.sdk")
        missing = [module for module in needed if not _importable(module)]
        if missing:
            raise Skipped(f"LiteLLM's proxy needs {', '.join(missing)} (the bench extra installs them)")
        assert self.upstream is not None
        upstream_key = self.upstream_key(name)
        master_key = f"sk-bench-master-{uuid.uuid4().hex}"
        config = self.work / "litellm.yaml"
        config.write_text(json.dumps({  # JSON is YAML
            "model_list": [{"model_name": MODEL, "litellm_params": {
                "model": f"openai/{MODEL}", "api_base": self.upstream.base_url, "api_key": upstream_key}}],
            "litellm_settings": {"telemetry": False},
            "general_settings": {"master_key": master_key},  # it refuses to start without one
        }))
        port = free_port()
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
               "LITELLM_TELEMETRY": "False", "DISABLE_SCHEMA_UPDATE": "true"}
        launched = Launched(name, [str(executable), "--config", str(config), "--host", "127.0.0.1",
                                   "--port", str(port), "--num_workers", "1"], env, self.logs, cwd=self.work)
        self.stops.append(launched.stop)
        root = f"http://127.0.0.1:{port}"
        launched.wait_http(root + "/health/liveliness")
        version = _version("litellm")
        return Peer(name, root + "/v1", master_key, upstream_key, launched.pid, {},
                    f"LiteLLM {version} proxy (uvicorn), 1 worker, master key, no database, LITELLM_LOG=ERROR")

    def relay(self, name: str) -> Peer:
        assert self.upstream is not None
        upstream = httpx.URL(self.upstream.base_url)
        port = free_port()
        launched = Launched(name, [sys.executable, str(Path(__file__).with_name("relay.py")), "--port", str(port),
                                   "--to", f"{upstream.host}:{upstream.port}"], dict(os.environ), self.logs)
        self.stops.append(launched.stop)
        root = f"http://127.0.0.1:{port}"
        launched.wait_http(root + "/")
        key = self.upstream_key(name)
        return Peer(name, root + upstream.path.rstrip("/"), key, key, launched.pid, {},
                    "bench/relay.py (uvloop, bytes passed both ways untouched), 1 process")

    def portkey(self, name: str) -> Peer:
        node, npm = shutil.which("node"), shutil.which("npm")
        if node is None:
            raise Skipped("node is not installed")
        if not PORTKEY_ENTRY.exists():
            if npm is None:
                raise Skipped("npm is not installed, and bench/node/node_modules has no @portkey-ai/gateway")
            done = subprocess.run([npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--silent"],
                                  capture_output=True, text=True, timeout=600)
            if done.returncode != 0 or not PORTKEY_ENTRY.exists():
                raise Skipped(f"npm install in bench/node failed: {done.stderr.strip()[-400:]}")
        assert self.upstream is not None
        upstream_key = self.upstream_key(name)
        port = free_port()
        env = {**os.environ, "NODE_ENV": "production"}
        launched = Launched(name, [node, str(PORTKEY_ENTRY), f"--port={port}", "--headless"], env, self.logs,
                            cwd=NODE_DIR)
        self.stops.append(launched.stop)
        root = f"http://127.0.0.1:{port}"
        launched.wait_http(root + "/")
        version = json.loads((PORTKEY_ENTRY.parents[1] / "package.json").read_text())["version"]
        node_version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
        return Peer(name, root + "/v1", upstream_key, upstream_key, launched.pid,
                    {"x-portkey-provider": "openai", "x-portkey-custom-host": self.upstream.base_url},
                    f"@portkey-ai/gateway {version} on node {node_version}, headless")

    def start(self, name: str) -> Peer:
        if name == "direct":
            assert self.upstream is not None
            key = self.upstream_key(name)
            return Peer(name, self.upstream.base_url, key, key, self.upstream.process.pid, {},
                        "the fake upstream itself (aiohttp, 1 process)")
        if name == "relay":
            return self.relay(name)
        if name == "contentmill_embedded":
            return self.contentmill(name, redis=False, workers=1)
        if name == "contentmill_redis":
            return self.contentmill(name, redis=True, workers=1)
        if name == "contentmill_redis_2w":
            return self.contentmill(name, redis=True, workers=2)
        if name == "contentmill_baseline":
            if self.baseline_tree is None:
                raise Skipped("--baseline-tree names no checkout")
            return self.contentmill(name, redis=True, workers=1, tree=self.baseline_tree)
        if name == "contentmill_granian":
            return self.granian(name)
        if name == "contentmill_h11":
            return self.uvicorn_h11(name)
        if name == "litellm_proxy":
            return self.litellm_proxy(name)
        if name == "portkey":
            return self.portkey(name)
        raise ValueError(name)

    def _stop_served(self, name: str, server: Served) -> None:
        server.stop()
        (self.logs / f"{name}.log").write_text(server.stderr)

    def stop_all(self) -> None:
        for stop in reversed(self.stops):
            with contextlib.suppress(Exception):
                stop()
        self.stops.clear()
        if self.redis_prefixes:
            with contextlib.suppress(Exception):
                import redis as redis_client

                client = redis_client.Redis.from_url(REDIS_URL, socket_timeout=5)
                for prefix in self.redis_prefixes:
                    keys = list(client.scan_iter(match=prefix + "*", count=1000))
                    for start in range(0, len(keys), 1000):
                        client.delete(*keys[start:start + 1000])
                client.close()


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


# -- load ----------------------------------------------------------------------------------------------------


async def ask(client: openai.AsyncOpenAI) -> None:
    i = next(counter)
    await client.chat.completions.create(
        model=MODEL, max_tokens=16,
        messages=[{"role": "user", "content": f"Write a one-line tagline for ceramic mug number {i}."}])


async def sequential(peer: Peer, n: int) -> list[float]:
    assert peer.client is not None
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        peer.sent += 1
        try:
            await ask(peer.client)
        except openai.APIError as exc:
            peer.errors += 1
            peer.first_error = peer.first_error or repr(exc)[:300]
            continue
        samples.append(time.perf_counter() - started)
    return samples


async def burst(peer: Peer, n: int, clients: int) -> float:
    """Seconds for ``n`` requests from ``clients`` concurrent callers sharing one SDK client."""
    assert peer.client is not None
    client = peer.client
    left = n

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            peer.sent += 1
            try:
                await ask(client)
            except openai.APIError as exc:
                peer.errors += 1
                peer.first_error = peer.first_error or repr(exc)[:300]

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(clients)))
    return time.perf_counter() - started


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _redis_pid() -> int | None:
    """redis-server's process id, when it runs on this machine (its CPU is part of a Redis peer's cost)."""
    try:
        import redis as redis_client

        client = redis_client.Redis.from_url(REDIS_URL, socket_timeout=2)
        pid = int(client.info("server")["process_id"])
        client.close()
    except Exception:
        return None
    return pid if _stat(pid) is not None else None


async def quiet(pids: list[int], window_s: float = QUIET_WINDOW_S, limit_s: float = QUIET_LIMIT_S) -> float:
    """Wait until ``pids`` (with their children) together use under QUIET_SHARE of a core over ``window_s``, at
    most ``limit_s``; returns the seconds waited."""
    started = time.perf_counter()
    last = sum(cpu_seconds(pid) for pid in pids)
    while time.perf_counter() - started < limit_s:
        await asyncio.sleep(window_s)
        now = sum(cpu_seconds(pid) for pid in pids)
        if now - last < QUIET_SHARE * window_s:
            break
        last = now
    return time.perf_counter() - started


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def chunks(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def measure(peers: list[Peer], single: int, concurrent: int, rounds: int, warmup: int) -> None:
    for peer in peers:
        peer.client = openai.AsyncOpenAI(base_url=peer.base_url, api_key=peer.api_key, max_retries=0,
                                         default_headers=peer.headers, timeout=60.0)
    idle = {peer.name: cpu_seconds(peer.pid) for peer in peers}  # what each uses doing nothing, while others work
    await asyncio.sleep(IDLE_S)
    for peer in peers:
        peer.idle_cpu_pct = (cpu_seconds(peer.pid) - idle[peer.name]) / IDLE_S * 100
    for peer in peers:  # warm-up: connections, imports, JIT (node), the key cache
        await sequential(peer, warmup)
        await burst(peer, 4 * CLIENTS, CLIENTS)
    single_parts, burst_parts = chunks(single, rounds), chunks(concurrent, rounds)
    redis_pid = _redis_pid() if any(peer.redis for peer in peers) else None
    everyone = [peer.pid for peer in peers] + ([redis_pid] if redis_pid else [])
    await quiet(everyone)
    for index in range(rounds):
        order = peers[index % len(peers):] + peers[:index % len(peers)]  # each round starts with another peer
        for peer in order:
            before = cpu_seconds(peer.pid)
            peer.latencies += await sequential(peer, single_parts[index])
            between, client_before = cpu_seconds(peer.pid), _own_cpu_seconds()
            redis_before = cpu_seconds(redis_pid) if peer.redis and redis_pid else None
            elapsed = await burst(peer, burst_parts[index], CLIENTS)
            peer.burst_s += elapsed
            peer.round_rps.append(burst_parts[index] / elapsed)
            peer.burst_requests += burst_parts[index]
            # What the burst left running (a ledger written after the answers) is the burst's, and the next peer's
            # sequential calls start on an idle machine rather than beside it.
            peer.settle_s.append(await quiet(everyone))
            peer.burst_cpu_s += cpu_seconds(peer.pid) - between
            peer.burst_client_cpu_s += _own_cpu_seconds() - client_before
            if redis_before is not None and redis_pid:
                peer.burst_redis_cpu_s = (peer.burst_redis_cpu_s or 0.0) + cpu_seconds(redis_pid) - redis_before
            peer.single_cpu_s += between - before
    for peer in peers:
        await peer.client.close()  # type: ignore[union-attr]


async def first_answer(peer: Peer) -> None:
    """One call through the peer; Skipped with the error if it does not answer."""
    async with openai.AsyncOpenAI(base_url=peer.base_url, api_key=peer.api_key, max_retries=0,
                                  default_headers=peer.headers, timeout=30.0) as client:
        try:
            await ask(client)
        except openai.APIError as exc:
            raise Skipped(f"its first call failed: {exc!r}"[:500]) from None
    peer.sent += 1


def report(peers: list[Peer], upstream: Served, single: int, concurrent: int) -> None:
    stats = httpx.get(upstream.root_url + "/stats", timeout=10, trust_env=False).json()
    base = next(p for p in peers if p.name == "direct")
    if not base.latencies or base.errors:
        raise SystemExit(f"the direct calls failed ({base.errors} errors, the first: {base.first_error})")
    base_p50, base_p99 = percentile(base.latencies, 0.5), percentile(base.latencies, 0.99)
    base_rps = base.burst_requests / base.burst_s
    results: dict[str, dict[str, Any]] = {}
    for peer in peers:
        if peer.data_dir is not None and peer.note.endswith(EMBEDDED):
            # the embedded profile's admission: the data directory's SQLite file, or memory in older versions
            where = "in the data dir's SQLite file" if (peer.data_dir / "admission.sqlite3").exists() else "in memory"
            peer.note = peer.note.removesuffix(EMBEDDED) + where + " (embedded profile)"
    for peer in peers:
        if not peer.latencies or peer.burst_s <= 0 or peer.errors > peer.sent // 100:
            emit(figure="skipped", peer=peer.name, reason=f"{peer.errors} of {peer.sent} calls failed, the first: "
                 f"{peer.first_error}")
            continue
        p50, p99 = percentile(peer.latencies, 0.5), percentile(peer.latencies, 0.99)
        rps = peer.burst_requests / peer.burst_s
        # each round's ratio to the direct calls of the same round, so drift in the machine's load cancels out
        ratios = [mine / theirs for mine, theirs in zip(peer.round_rps, base.round_rps, strict=True)]
        rss, processes = rss_mb(peer.pid)
        reached = stats["by_key"].get(key_fingerprint(peer.upstream_key), {}).get("requests", 0)
        row = {"peer": peer.name, "setup": peer.note, "requests_c1": single, "requests_c64": concurrent,
               "p50_ms": round(p50 * 1e3, 3), "p99_ms": round(p99 * 1e3, 3),
               "added_p50_ms": round((p50 - base_p50) * 1e3, 3), "added_p99_ms": round((p99 - base_p99) * 1e3, 3),
               "rps_c64": round(rps, 1), "throughput_ratio": round(statistics.median(ratios), 3),
               "throughput_ratio_pooled": round(rps / base_rps, 3),
               "throughput_ratio_rounds": [round(r, 3) for r in ratios],
               "rss_mb": round(rss, 1), "processes": processes,
               "cpu_ms_per_request_c64": round(peer.burst_cpu_s / peer.burst_requests * 1e3, 3),
               "cpu_ms_per_request_c1": round(peer.single_cpu_s / max(1, single) * 1e3, 3),
               "client_cpu_ms_per_request_c64": round(peer.burst_client_cpu_s / peer.burst_requests * 1e3, 3),
               "settle_s_max": round(max(peer.settle_s, default=0.0), 2),
               "errors": peer.errors, "sent": peer.sent, "reached_upstream": reached}
        if peer.first_error:
            row["first_error"] = peer.first_error
        results[peer.name] = row
        emit(figure="latency_c1", **{k: row[k] for k in ("peer", "requests_c1", "p50_ms", "p99_ms", "added_p50_ms",
                                                         "added_p99_ms")})
        emit(figure="throughput_c64", **{k: row[k] for k in ("peer", "requests_c64", "rps_c64", "throughput_ratio",
                                                             "throughput_ratio_pooled", "throughput_ratio_rounds")})
        row["idle_cpu_pct"] = round(peer.idle_cpu_pct, 1)
        if peer.burst_redis_cpu_s is not None:
            row["redis_cpu_ms_per_request_c64"] = round(peer.burst_redis_cpu_s / peer.burst_requests * 1e3, 3)
        emit(figure="server_resources", **{k: row[k] for k in (
            "peer", "rss_mb", "processes", "cpu_ms_per_request_c64", "cpu_ms_per_request_c1",
            "redis_cpu_ms_per_request_c64", "client_cpu_ms_per_request_c64", "idle_cpu_pct", "settle_s_max")
            if k in row})
        emit(figure="check", **{k: row[k] for k in ("peer", "setup", "sent", "errors", "reached_upstream")},
             **({"first_error": peer.first_error} if peer.first_error else {}))
    targets(results)


def targets(results: dict[str, dict[str, Any]]) -> None:
    """The issue's targets, for contentmill with Redis admission (1 and 2 workers)."""
    portkey = results.get("portkey")
    for name in ("contentmill_redis", "contentmill_redis_2w"):
        row = results.get(name)
        if row is None:
            continue
        checks = {"added_p50_ms < 1": row["added_p50_ms"] < 1.0, "added_p99_ms < 3": row["added_p99_ms"] < 3.0,
                  "throughput_ratio >= 0.75": row["throughput_ratio"] >= 0.75}
        if portkey is not None:
            checks["added_p50 below Portkey's"] = row["added_p50_ms"] < portkey["added_p50_ms"]
            checks["added_p99 below Portkey's"] = row["added_p99_ms"] < portkey["added_p99_ms"]
            checks["throughput above Portkey's"] = row["throughput_ratio"] > portkey["throughput_ratio"]
        emit(figure="targets", peer=name, **{k: ("met" if v else "missed") for k, v in checks.items()})


def _commit(tree: Path | None = None) -> str:
    """The commit of the contentmill that is measured (this one, or the checkout ``tree``), with ``+changes`` if
    its tree differs from it."""
    import contentmill

    where = tree / "contentmill" if tree is not None else Path(contentmill.__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no", "."],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return f"{head or '?'}{'+changes' if dirty else ''} ({where})"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return "?"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM and SIGINT (Ctrl-C, also when started in the background) end the run through ``finally``, which
    stops every process started."""
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests per peer at concurrency 1; twice as many at 64 clients (default 2000)")
    parser.add_argument("--only", default="", help=f"comma-separated peers (direct is always run): {','.join(PEERS)}")
    parser.add_argument("--rounds", type=int, default=8, help="rounds alternating between the peers (default 8)")
    parser.add_argument("--warmup", type=int, default=200, help="sequential warm-up calls per peer (default 200)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (the servers' logs, data dirs)")
    parser.add_argument("--baseline-tree", type=Path, default=None,
                        help="another contentmill checkout, run as the contentmill_baseline peer (Redis admission)")
    options = parser.parse_args()
    if options.baseline_tree is not None and not (options.baseline_tree / "contentmill").is_dir():
        parser.error(f"--baseline-tree {options.baseline_tree} holds no contentmill package")
    wanted = ["direct", *[n for n in options.only.split(",") if n and n != "direct"]] if options.only else [
        n for n in PEERS if n != "contentmill_baseline" or options.baseline_tree is not None]
    unknown = [n for n in wanted if n not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(PEERS)}")
    single, concurrent = options.requests, 2 * options.requests
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    emit(figure="run", cpu=_cpu_model(), cores=os.cpu_count(), python=sys.version.split()[0],
         contentmill=_commit(), openai_sdk=openai.__version__, requests_c1=single, requests_c64=concurrent,
         clients=CLIENTS, rounds=options.rounds, load_average=os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="cm-bench-server-"))
    bench = Bench(work, options.baseline_tree.resolve() if options.baseline_tree is not None else None)
    try:
        with interruptible():
            upstream = bench.start_upstream()
            peers = []
            for name in wanted:
                try:
                    peer = bench.start(name)
                    asyncio.run(first_answer(peer))
                except Exception as exc:  # a peer that cannot start is a skipped line, never the end of the run
                    if name == "direct":
                        raise
                    emit(figure="skipped", peer=name, reason=str(exc) if isinstance(exc, Skipped) else repr(exc))
                    continue
                peers.append(peer)
                emit(figure="started", peer=name, setup=peer.note)
            asyncio.run(measure(peers, single, concurrent, options.rounds, options.warmup))
            report(peers, upstream, single, concurrent)
            emit(figure="run_end", load_average=os.getloadavg())
    except KeyboardInterrupt:
        emit(figure="interrupted")
        raise SystemExit(130) from None
    finally:
        bench.stop_all()
        if options.keep:
            emit(figure="kept", folder=str(work))
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
