"""Run the fake upstream, or ``contentmill serve``, as a subprocess, the way tests and benchmarks use them::

    with start_upstream(rpm=60, latency_ms=20) as upstream:
        client = httpx.Client(base_url=upstream.base_url)
        ...
        upstream.stats()["requests"]

    with start_gateway_server(env) as server:
        openai.OpenAI(base_url=server.base_url, api_key=key)

A separate process keeps the server off the caller's event loop and CPU budget, as a real API would be.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from contextlib import suppress
from types import TracebackType
from typing import IO, Any, Self, TypeVar

import httpx

from contentmill.errors import EngineError

READY_PREFIX = "ready "
S = TypeVar("S", bound="Served")
STOP_TIMEOUT_S = 10.0


def upstream_args(**options: object) -> list[str]:
    """Command-line flags from keyword options: ``rpm=5`` is ``--rpm 5``, a list repeats its flag, None skips."""
    args: list[str] = []
    for name, value in options.items():
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if item is not None:
                args += ["--" + name.replace("_", "-"), str(item)]
    return args


class Served:
    """A server process that printed ``ready URL``: ``base_url`` ends in /v1; ``stop()`` (or ``with``) ends it."""

    def __init__(self, process: subprocess.Popen[bytes], base_url: str, stderr: IO[bytes]) -> None:
        self.process = process
        self.base_url = base_url
        self._stderr = stderr
        self.stderr = ""

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    def stop(self) -> int:
        """Terminate the server (SIGTERM, then a kill if it hangs) and return its exit code; safe to repeat.

        Afterwards ``stderr`` holds what the server wrote there.
        """
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        if not self._stderr.closed:
            self._stderr.seek(0)
            self.stderr = self._stderr.read().decode(errors="replace")
            self._stderr.close()
        return self.process.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Upstream(Served):
    """A running fake upstream, with its counters."""

    def stats(self) -> dict[str, Any]:
        """What the server served and refused so far (its ``GET /stats``)."""
        response = httpx.get(self.root_url + "/stats", timeout=10, trust_env=False)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def reset(self) -> None:
        """Zero the server's counters."""
        httpx.post(self.root_url + "/stats/reset", timeout=10, trust_env=False).raise_for_status()


def _first_line(process: subprocess.Popen[bytes], timeout_s: float) -> str | None:
    """The first line the process prints, or None if it prints none in time or exits first."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                return None
            chunk = os.read(fd, 4096)
            if not chunk:  # stdout closed: the process is on its way out, let it finish so its code is known
                with suppress(subprocess.TimeoutExpired):
                    process.wait(max(remaining, 1.0))
                return None
            buffer += chunk
    return buffer.split(b"\n", 1)[0].decode(errors="replace")


def _start(kind: type[S], command: list[str], what: str, hint: str, ready_timeout: float,
           env: Mapping[str, str] | None = None) -> S:
    """Start ``command`` and return once it prints ``ready URL``; raises EngineError with its stderr if not."""
    stderr = tempfile.TemporaryFile()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                               env=None if env is None else dict(env))
    line = _first_line(process, ready_timeout)
    if line is not None and line.startswith(READY_PREFIX):
        return kind(process, line.removeprefix(READY_PREFIX).strip(), stderr)
    failed = kind(process, "", stderr)
    exited = process.poll()
    failed.stop()
    why = f"exited with code {exited}" if exited is not None else f"did not become ready within {ready_timeout:g} s"
    raise EngineError(f"{what} {why}; {hint}. Its stderr:\n{failed.stderr.strip() or '(empty)'}")


def start_upstream(*args: str, ready_timeout: float = 30.0, **options: object) -> Upstream:
    """Start ``python -m contentmill.testing.upstream --port 0`` with ``args`` and ``options`` as flags.

    Returns once the server listens; raises EngineError with the server's stderr if it does not in time.
    """
    command = [sys.executable, "-m", "contentmill.testing.upstream", "--port", "0", *upstream_args(**options), *args]
    return _start(Upstream, command, "the fake upstream",
                  "check its options (python -m contentmill.testing.upstream --help)", ready_timeout)


def start_gateway_server(env: Mapping[str, str], *args: str, ready_timeout: float = 60.0) -> Served:
    """Start ``contentmill serve --port 0`` with ``args`` under ``env`` (the settings it reads); returns once it
    answers."""
    command = [sys.executable, "-m", "contentmill.cli", "serve", "--port", "0", *args]
    return _start(Served, command, "contentmill serve", "check the settings in its environment", ready_timeout,
                  env)
