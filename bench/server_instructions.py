"""Instructions the ``contentmill serve`` worker executes per chat request, counted by valgrind's callgrind.

Wall times on a shared two-core machine move with whatever else runs; instruction counts do not. This starts the
fake upstream and ``contentmill serve`` (Redis admission, one worker) under ``valgrind --tool=callgrind
--instr-atstart=no``, sends warm-up requests, switches counting on for ``--requests`` sequential chat requests
through the ``openai`` SDK (cache off, so each reaches the upstream), switches it off and reads the total. Work a
request leaves for after its answer (the settlement, the ledger row) is counted too, as it runs within the window.
Only the server process is counted: not the client, the upstream, Redis or the kernel.

To compare two checkouts, give each with ``--tree`` (it goes first on the server's PYTHONPATH)::

    .venv/bin/python bench/server_instructions.py                       # this checkout
    .venv/bin/python bench/server_instructions.py --tree /path/to/other/checkout

Needs valgrind (Debian's ``valgrind`` package) and Redis on 127.0.0.1:6379; says so and exits 0 without them.
A run takes one to two minutes (the server runs some 50 times slower while counted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import openai
import redis

from contentmill.testing.harness import start_upstream

REDIS_URL = "redis://127.0.0.1:6379/0"
CATALOG = "models:\n  openai:gpt-4o-mini: {rpm: 100000000, tpm: 100000000000}\n"
READY_TIMEOUT_S = 600.0


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "server_instructions", **fields}), flush=True)


def total_instructions(out: Path) -> int:
    """The largest ``totals:``/``summary:`` figure of the dumps callgrind wrote for this run."""
    total = 0
    for dump in out.parent.glob(out.name + "*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith(("totals:", "summary:")):
                total = max(total, int(line.split()[1]))
    return total


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def drive(base_url: str, key: str, pid: int, warmup: int, requests: int) -> None:
    client = openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120.0,
                                default_headers={"x-contentmill-cache": "off"})

    async def ask(tag: str) -> None:
        await client.chat.completions.create(model="gpt-4o-mini", max_tokens=16, messages=[
            {"role": "user", "content": f"Write a one-line tagline for ceramic mug number {tag}."}])

    for i in range(warmup):
        await ask(f"w{i}")
    subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True, check=True)
    for i in range(requests):
        await ask(f"m{i}")
    await asyncio.sleep(1.0)  # the last answers' settlements and ledger rows
    subprocess.run(["callgrind_control", "-i", "off", str(pid)], capture_output=True, check=True)
    subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)
    await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", default=str(Path(__file__).resolve().parents[1]),
                        help="the checkout whose server is measured (default: this one)")
    parser.add_argument("--requests", type=int, default=300, help="requests counted (default 300)")
    parser.add_argument("--warmup", type=int, default=150, help="requests before counting (default 150)")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            emit(skipped=f"{tool} is not installed (apt-get install valgrind)")
            return 0
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        emit(skipped=f"no Redis at {REDIS_URL}: {exc}")
        return 0
    upstream = start_upstream()
    work = Path(tempfile.mkdtemp(prefix="contentmill-instructions-"))
    prefix = f"bench-instructions:{uuid.uuid4().hex[:12]}:"
    (work / "catalog.yaml").write_text(CATALOG)
    env = dict(os.environ, PYTHONPATH=args.tree, CONTENTMILL_DATA_DIR=str(work),
               CONTENTMILL_CATALOG_FILE=str(work / "catalog.yaml"), OPENAI_BASE_URL=upstream.base_url,
               OPENAI_API_KEY="sk-bench-instructions", CONTENTMILL_MONITOR_INTERVAL_S="0",
               CONTENTMILL_LOG_LEVEL="WARNING", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               CONTENTMILL_REDIS_URL=REDIS_URL, CONTENTMILL_REDIS_PREFIX=prefix)
    server: subprocess.Popen[bytes] | None = None
    try:
        made = subprocess.run([sys.executable, "-m", "contentmill.cli", "keys", "create", "--team", "bench", "--json"],
                              env=env, capture_output=True, text=True, check=True, cwd=work)
        key = str(json.loads(made.stdout)["key"])
        port = free_port()
        out = work / "callgrind.out"
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", sys.executable,
             "-m", "contentmill.cli", "serve", "--port", str(port)],
            env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                emit(skipped="contentmill serve did not answer under valgrind")
                return 1
            time.sleep(0.5)
        asyncio.run(drive(f"http://127.0.0.1:{port}/v1", key, server.pid, args.warmup, args.requests))
        time.sleep(2.0)
        total = total_instructions(out)
        emit(tree=args.tree, requests=args.requests, instructions=total,
             instructions_per_request_millions=round(total / args.requests / 1e6, 3))
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(120)
        upstream.stop()
        client = redis.Redis.from_url(REDIS_URL)
        leftover = list(client.scan_iter(match=prefix + "*"))
        if leftover:
            client.delete(*leftover)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
