"""``contentmill report`` and ``contentmill alerts`` run as their own processes against a real ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import T0, call

from contentmill.ledger import Alert, LedgerStore
from contentmill.metering import Usage

SINCE, UNTIL = T0.isoformat(), (T0 + timedelta(days=1)).isoformat()


def cli(ledger_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The commands as ``contentmill`` mounts them, with the ledger given the way a user gives it."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CONTENTMILL_")}
    if ledger_url.startswith("sqlite:///"):
        env["CONTENTMILL_DATA_DIR"] = str(Path(ledger_url.removeprefix("sqlite:///")).parent)
    else:
        env["CONTENTMILL_DATABASE_URL"] = ledger_url
    command = [sys.executable, "-m", "contentmill.commands.ledger", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def one_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    data: dict[str, Any] = json.loads(lines[0])
    return data


@pytest.fixture
def filled(store: LedgerStore) -> LedgerStore:
    store.write_calls(
        [
            call(ts=T0 + timedelta(minutes=5), cost_usd=1.25, usage=Usage(1000, 500)),
            call(ts=T0 + timedelta(minutes=50), cost_usd=0.75, tags={"team": "ads", "project": "autumn"}),
            call(
                ts=T0 + timedelta(hours=2),
                cost_usd=3.0,
                tags={"team": "shop"},
                model="deepseek:deepseek-chat",
            ),
            call(
                ts=T0 + timedelta(hours=2),
                cost_usd=0.0,
                saved_usd=0.5,
                outcome="cached",
                tags={"team": "shop"},
            ),
            call(ts=T0 - timedelta(hours=1), cost_usd=99.0),  # before --since
        ]
    )
    store.add_alert(Alert("budget_used", "warning", "team=ads/day", "team=ads/day is 80% used", ts=T0))
    return store


def test_report_by_team_as_json(filled: LedgerStore, ledger_url: str, tmp_path: Path) -> None:
    data = one_json(
        cli(ledger_url, tmp_path, "report", "--by", "team", "--since", SINCE, "--until", UNTIL, "--json")
    )
    assert data["by"] == "team" and data["since"] == SINCE and data["until"] == UNTIL
    rows = {row["team"]: row for row in data["rows"]}
    assert rows["ads"]["calls"] == 2 and rows["ads"]["cost_usd"] == pytest.approx(2.0)
    assert rows["ads"]["input_tokens"] == 1100 and rows["ads"]["output_tokens"] == 550
    assert rows["shop"]["cost_usd"] == pytest.approx(3.0) and rows["shop"]["saved_usd"] == pytest.approx(0.5)
    assert data["total"]["calls"] == 4 and data["total"]["cost_usd"] == pytest.approx(5.0)


def test_report_by_model_and_hour(filled: LedgerStore, ledger_url: str, tmp_path: Path) -> None:
    args = ("report", "--by", "model", "--bucket", "hour", "--since", SINCE, "--until", UNTIL, "--json")
    data = one_json(cli(ledger_url, tmp_path, *args))
    cells = {(row["bucket"], row["model"]): row["cost_usd"] for row in data["rows"]}
    assert cells == {
        (T0.isoformat(), "openai:gpt-4o-mini"): pytest.approx(2.0),
        ((T0 + timedelta(hours=2)).isoformat(), "deepseek:deepseek-chat"): pytest.approx(3.0),
        ((T0 + timedelta(hours=2)).isoformat(), "openai:gpt-4o-mini"): 0.0,
    }


def test_report_by_any_tag_as_a_table(filled: LedgerStore, ledger_url: str, tmp_path: Path) -> None:
    done = cli(ledger_url, tmp_path, "report", "--by", "project", "--since", SINCE, "--until", UNTIL)
    assert done.returncode == 0, done.stderr
    assert "spend by project" in done.stdout and "autumn" in done.stdout and "(none)" in done.stdout
    assert "total" in done.stdout


def test_alerts_as_json(filled: LedgerStore, ledger_url: str, tmp_path: Path) -> None:
    data = one_json(cli(ledger_url, tmp_path, "alerts", "--since", SINCE, "--json"))
    (alert,) = data["alerts"]
    assert alert["rule"] == "budget_used" and alert["subject"] == "team=ads/day" and alert["ts"] == SINCE
    assert one_json(cli(ledger_url, tmp_path, "alerts", "--since", UNTIL, "--json"))["alerts"] == []


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("report", "--since", "yesterday"), "--since takes an ISO 8601 time"),
        (("report", "--by", "no such!"), "cannot group by 'no such!'"),
        (("report", "--since", UNTIL, "--until", SINCE), "must be after"),
    ],
)
def test_errors_are_one_line_on_stderr(
    store: LedgerStore, ledger_url: str, tmp_path: Path, args: tuple[str, ...], problem: str
) -> None:
    done = cli(ledger_url, tmp_path, *args, "--json")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("contentmill: ") and problem in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_unreachable_ledger_is_one_line_without_the_password(tmp_path: Path) -> None:
    done = cli("postgresql://cm:pw-s3cr3t@127.0.0.1:1/ledger", tmp_path, "alerts", "--json")
    assert done.returncode == 1 and done.stderr.startswith("contentmill: ledger ")
    assert len(done.stderr.strip().splitlines()) == 1 and "pw-s3cr3t" not in done.stderr
