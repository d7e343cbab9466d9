"""Crash safety: a run killed mid-way and started again pays nothing again for the products it finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from products_helpers import product_row, write_catalog

from contentmill.flows.product_descriptions import product_descriptions
from contentmill.testing.harness import Upstream

pytestmark = pytest.mark.usefixtures("prefect_api")
WORKER = Path(__file__).with_name("products_worker.py")
START_TIMEOUT_S = 240.0


def journaled(data_dir: Path) -> list[str]:
    ids = []
    for journal in (data_dir / "products" / "runs").glob("*.jsonl"):
        for line in journal.read_text(encoding="utf-8").splitlines():
            try:
                ids.append(json.loads(line)["id"])
            except ValueError:
                pass  # the line being written when the process died
    return ids


async def test_a_killed_run_started_again_bills_no_finished_product_twice(
        shop: Callable[..., Upstream], tmp_path: Path, prefect_api: str) -> None:
    server = shop(latency_ms=600)
    total = 48
    catalog = write_catalog(tmp_path / "catalog.csv", [product_row(n) for n in range(total)])
    out = tmp_path / "out.jsonl"
    config = {"packing": {"max_items": 4, "start_concurrency": 1, "max_concurrency": 1}}
    data_dir = Path(os.environ["CONTENTMILL_DATA_DIR"])
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    process = subprocess.Popen([sys.executable, str(WORKER), str(catalog), str(out), json.dumps(config)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(journaled(data_dir)) < 8 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    finished = journaled(data_dir)
    assert 8 <= len(finished) < total and not out.exists()
    summary = await product_descriptions(catalog=str(catalog), out=str(out), config=config)
    assert (summary["items"], summary["done"], summary["failed"]) == (total, total, 0)
    assert summary["resumed"] == len(finished)
    billed = server.stats()["item_ids"]
    assert all(billed[pid] == 1 for pid in finished)  # nothing finished was paid for again
    assert sorted(billed) == sorted(f"p{n:04d}" for n in range(total))
    assert sum(billed.values()) <= total + 4  # at most the one batch in flight at the kill, paid twice
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [f"p{n:04d}" for n in range(total)]
    assert not journaled(data_dir)  # a finished run removes its journal
