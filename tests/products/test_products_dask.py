"""A run's batches on a local Dask cluster: 2,000 products with ``--workers 2`` in the services profile (Redis
limits and cache, a PostgreSQL ledger), one worker process killed with SIGKILL mid-run. The run still finishes
with every product once, and the upstream sees exactly the requests a one-process run of the same catalog makes,
none of them refused: the two workers share one RPM bucket in Redis, and the killed worker's batch, sent again,
is answered from the shared cache for whatever the upstream had already answered.

The upstream is paused (SIGSTOP) around the kill, so no answer is in the wire when the worker dies: a request
still waiting for its answer is dropped by the upstream with its connection, as a vendor's is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from products_helpers import product_row, write_catalog

from contentmill.testing.harness import Upstream

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
CLI = [sys.executable, str(Path(__file__).with_name("products_cli_app.py"))]
REDIS_URL = "redis://127.0.0.1:6379/0"
PRODUCTS = 2000
RPM = 100  # about 130 requests: past the first minute's burst, the shared bucket paces them
TPM = 50_000_000  # far from binding: requests are packed by size alone, the same in both runs
KILL_AFTER = 400  # products journaled before a worker is killed
RUN_TIMEOUT_S = 600.0
ONE_MODEL = {"tiers": {tier: {"model": "openai:gpt-4o-mini", "fallbacks": []}
                       for tier in ("light", "standard", "premium")}}


def services_env(upstream: Upstream, tmp_path: Path, name: str, database: str, prefix: str,
                 prefect_api: str) -> dict[str, str]:
    models = tmp_path / "models.yaml"
    models.write_text(f"models:\n  openai:gpt-4o-mini: {{rpm: {RPM}, tpm: {TPM}}}\n", encoding="utf-8")
    return {**os.environ, "PREFECT_API_URL": prefect_api, "CONTENTMILL_PROFILE": "services",
            "CONTENTMILL_REDIS_URL": REDIS_URL, "CONTENTMILL_REDIS_PREFIX": f"{prefix}{name}:",
            "CONTENTMILL_DATABASE_URL": database, "CONTENTMILL_DATA_DIR": str(tmp_path / name),
            "CONTENTMILL_CATALOG_FILE": str(models), "CONTENTMILL_ADMISSION_WAIT_S": "300",
            "CONTENTMILL_CACHE_LOCK_LEASE_S": "3", "OPENAI_BASE_URL": upstream.base_url}


def journaled(data_dir: Path) -> int:
    return sum(path.read_bytes().count(b"\n") for path in (data_dir / "products" / "runs").glob("*.jsonl"))


def dask_workers(process: subprocess.Popen[str]) -> list[psutil.Process]:
    """The worker processes a local cluster spawned from ``process``."""
    found = []
    for child in psutil.Process(process.pid).children(recursive=True):
        try:
            if any("spawn_main" in part for part in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def finish(process: subprocess.Popen[str]) -> dict[str, Any]:
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"the run did not end within {RUN_TIMEOUT_S:.0f} s; its last output:\n{err[-6000:]}")
    assert process.returncode == 0, err[-4000:]
    summary: dict[str, Any] = json.loads(out)
    return summary


def test_a_dask_run_survives_a_killed_worker_and_pays_what_one_process_pays(
        shop: Callable[..., Upstream], tmp_path: Path, prefect_api: str, redis_prefix: str,
        make_database: Callable[[str, str], str]) -> None:
    catalog = write_catalog(tmp_path / "catalog.csv", [product_row(n) for n in range(PRODUCTS)])
    config = tmp_path / "products.json"
    config.write_text(json.dumps(ONE_MODEL), encoding="utf-8")
    args = [*CLI, str(catalog), "--config", str(config), "--no-graph", "--json"]

    alone = shop(latency_ms=200, rpm=RPM, tpm=TPM)
    env = services_env(alone, tmp_path, "alone", make_database("postgresql", "alone"), redis_prefix, prefect_api)
    baseline = finish(subprocess.Popen([*args, "--out", str(tmp_path / "alone.jsonl")], env=env, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    assert (baseline["done"], baseline["failed"]) == (PRODUCTS, 0)

    upstream = shop(latency_ms=200, rpm=RPM, tpm=TPM)
    env = services_env(upstream, tmp_path, "dask", make_database("postgresql", "dask"), redis_prefix, prefect_api)
    out = tmp_path / "dask.jsonl"
    process = subprocess.Popen([*args, "--out", str(out), "--workers", "2"], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while journaled(tmp_path / "dask") < KILL_AFTER and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = dask_workers(process)
        assert process.poll() is None and len(workers) == 2, "the run ended (or never started two workers)"
        os.kill(upstream.process.pid, signal.SIGSTOP)
        try:
            time.sleep(0.5)  # answers already sent are read and cached
            at_kill = journaled(tmp_path / "dask")
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait(30)
        finally:
            os.kill(upstream.process.pid, signal.SIGCONT)
        summary = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert KILL_AFTER <= at_kill < PRODUCTS  # killed mid-run
    assert (summary["items"], summary["done"], summary["failed"]) == (PRODUCTS, PRODUCTS, 0)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [f"p{n:04d}" for n in range(PRODUCTS)]  # each product once, in order
    assert all(r["description"] and r["error"] is None for r in rows)

    one, two = alone.stats(), upstream.stats()
    assert one["rejected_429"] == two["rejected_429"] == 0
    assert two["requests"] == one["requests"] == baseline["calls"]
    assert two["item_ids"] == one["item_ids"]  # each product asked for as often as in one process: paid once
