"""A process killed mid-call: its reservation shows in `contentmill report` at once, charged as reserved and
flagged, with an alert, whichever command runs next, and it is charged once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("gateway_worker.py")
KEY = "sk-test-orphans-0123456789"


def _reserved(path: Path) -> bool:
    if not path.is_file():
        return False
    conn = sqlite3.connect(path, timeout=30)
    try:
        return bool(conn.execute("SELECT count(*) FROM reservations").fetchone()[0])
    except sqlite3.OperationalError:  # the table is being made
        return False
    finally:
        conn.close()


def test_a_killed_calls_money_shows_in_the_next_report_with_an_alert(
        upstream: Callable[..., Any], tmp_path: Path) -> None:
    server = upstream(latency_ms=60_000)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CONTENTMILL_")},
           "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY, "CONTENTMILL_DATA_DIR": str(tmp_path),
           "CONTENTMILL_REQUEST_TIMEOUT_S": "120"}
    worker = subprocess.Popen([sys.executable, str(WORKER), "1", "1", "50", "hang"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _reserved(tmp_path / "admission.sqlite3"):
            assert time.monotonic() < deadline, "the worker never reserved"
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.wait(timeout=30)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "contentmill.cli", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    report = cli("report", "--by", "outcome", "--json")  # minutes before the reservation's deadline
    assert report.returncode == 0, report.stderr
    assert report.stderr.count("\n") == 1 and "calls whose process stopped mid-call" in report.stderr
    total = json.loads(report.stdout)["total"]
    assert total["orphaned"] == 1 and total["cost_usd"] > 0
    again = cli("report", "--by", "outcome", "--json")
    assert again.stderr == "" and json.loads(again.stdout)["total"] == total  # charged once
    alerts = cli("alerts", "--json")
    assert [a["rule"] for a in json.loads(alerts.stdout)["alerts"]] == ["orphan_charged"]
