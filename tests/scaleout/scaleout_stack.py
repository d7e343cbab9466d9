"""The services profile as an operator runs it, in subprocesses: a Prefect server on PostgreSQL, a process work
pool with workers, and flow runs of deployments; Redis, PostgreSQL and an S3-compatible store come from the suite.

Every process is started in its own session, so that stopping it also stops what it started (a worker's flow-run
processes); each writes to a log file whose tail a failed assertion shows.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the environment the tests run in, with prefect installed
POSTGRES_ADMIN_URL = os.environ.get("CONTENTMILL_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
POSTGRES_HOST = os.environ.get("CONTENTMILL_TEST_POSTGRES_HOST", "postgres@127.0.0.1:5432")
POOL = "contentmill-process"  # the pool prefect.yaml's deployments name
API_KEY = "sk-scaleout-0123456789abcdef"  # the fake upstream's key: lives in the workers' environment only
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
REDIS_URL = "redis://127.0.0.1:6379/0"
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
STOP_TIMEOUT_S = 15.0
# What a subprocess must not inherit from the test run: our settings, vendor keys, the test's Prefect settings.
_NOT_INHERITED = ("CONTENTMILL_", "PREFECT_", "OPENAI_", "AWS_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for this test session; dropped afterwards. Yields its name.

    Without a server the test is skipped with what to run, except in CI, where the test command starts one."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({type(exc).__name__}): run `make services`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield name
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGINT to the whole session (a worker stops its runs), then SIGKILL whatever is left of it."""
        pgid = self.process.pid
        if self.alive():
            with suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)  # the leader's children, and the leader if it hung
        self.process.wait()
        self._log.close()


class Stack:
    """Processes started for one test session, stopped in reverse order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.services: list[Service] = []

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> Service:
        log_path = self.root / f"{name}.log"
        log = log_path.open("wb")
        process = subprocess.Popen(list(args), env=dict(env), cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        service = Service(name, process, log_path, log)
        self.services.append(service)
        return service

    def logs(self) -> str:
        return "\n".join(f"--- {s.name} (exit {s.process.poll()}) ---\n{s.log()}" for s in self.services)

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.services.clear()


@dataclass
class Cluster:
    api: PrefectApi
    stack: Stack
    workers: list[str]

    def ran_by(self, run_ids: Sequence[str]) -> dict[str, list[str]]:
        """Which worker executed which flow run: the one whose log carries the run's own output (workers that
        lost the race to claim a run also name it, in their 'submitting' and 'aborted' lines)."""
        logs = {s.name: s.log(tail=10**8) for s in self.stack.services if s.name in self.workers}
        return {name: [rid for rid in run_ids if f"/flow-run/{rid}" in text] for name, text in logs.items()}


class PrefectApi:
    """The few REST calls the test needs of a Prefect server (no client settings touch the test process)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30, trust_env=False)

    def close(self) -> None:
        self.http.close()

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise AssertionError(f"{response.request.method} {response.request.url}: {response.status_code} "
                                 f"{response.text[:500]}")
        return response.json()

    def wait_ready(self, server: Service, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not server.alive():
                raise AssertionError(f"the Prefect server exited:\n{server.log()}")
            with suppress(httpx.HTTPError):
                if self.http.get("/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise AssertionError(f"the Prefect server did not answer within {timeout_s:g} s:\n{server.log()}")

    def create_pool(self, name: str) -> None:
        self._json(self.http.post("/work_pools/", json={"name": name, "type": "process"}))

    def wait_workers(self, pool: str, names: Sequence[str], services: Sequence[Service], timeout_s: float) -> None:
        """Until every named worker has sent the pool its first heartbeat, so that runs spread over all of them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = [s for s in services if not s.alive()]
            if dead:
                raise AssertionError(f"a worker exited:\n{dead[0].log()}")
            found = {w["name"] for w in self._json(self.http.post(f"/work_pools/{pool}/workers/filter", json={}))}
            if set(names) <= found:
                return
            time.sleep(0.5)
        raise AssertionError(f"workers {list(names)} did not join pool {pool} within {timeout_s:g} s")

    def deploy(self, stack: Stack, name: str, timeout_s: float = 120.0) -> str:
        """``prefect deploy --name NAME`` from the project directory, as an operator deploys prefect.yaml's
        deployment; returns its id."""
        service = stack.start(f"deploy-{name}", [str(BIN / "prefect"), "--no-prompt", "deploy", "--name", name],
                              clean_env(PREFECT_API_URL=self.url, PREFECT_HOME=str(stack.root / "deploy-home")))
        try:
            code = service.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        if code != 0:
            raise AssertionError(f"prefect deploy --name {name} ended with {code}:\n{service.log()}")
        deployment = self._json(self.http.post("/deployments/filter", json={
            "deployments": {"name": {"any_": [name]}}}))[0]
        found: str = deployment["id"]
        return found

    def run(self, deployment_id: str, parameters: Mapping[str, Any], env: Mapping[str, str]) -> str:
        body = {"parameters": dict(parameters), "job_variables": {"env": dict(env)}}
        run_id: str = self._json(self.http.post(f"/deployments/{deployment_id}/create_flow_run", json=body))["id"]
        return run_id

    def flow_run(self, run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._json(self.http.get(f"/flow_runs/{run_id}"))
        return found

    def wait(self, run_ids: Sequence[str], timeout_s: float) -> dict[str, dict[str, Any]]:
        """Each run once it has reached a final state; raises if one has not within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        done: dict[str, dict[str, Any]] = {}
        while len(done) < len(run_ids):
            for run_id in run_ids:
                if run_id not in done:
                    found = self.flow_run(run_id)
                    if found["state_type"] in FINAL_STATES:
                        done[run_id] = found
            if time.monotonic() > deadline:
                states = {r: self.flow_run(r)["state_type"] for r in run_ids if r not in done}
                raise AssertionError(f"flow runs not finished within {timeout_s:g} s: {states}")
            time.sleep(0.5)
        return done

    def logs(self, run_id: str) -> str:
        body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}
        return "\n".join(row["message"] for row in self._json(self.http.post("/logs/filter", json=body)))
