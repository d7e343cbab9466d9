"""The rows a run writes: CSV cells a spreadsheet would run as formulas are quoted, JSONL keeps the exact text."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from contentmill.products.output import Row, write_rows

FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\t=1+1", "\r=1+1"]


def test_csv_quotes_what_a_spreadsheet_would_run_and_jsonl_keeps_it(tmp_path: Path) -> None:
    rows = [Row(id=f"p{n}", name=name, category="Toys", tier="light", assigned_tier="light",
                description=f"A kite named {name}.", error=name, cost_usd=0.25)
            for n, name in enumerate(FORMULAS)]
    rows.append(Row(id="plain", name="Meadow Kite - red", category="Toys", tier="light", assigned_tier="light"))
    write_rows(tmp_path / "out.csv", rows)
    write_rows(tmp_path / "out.jsonl", rows)
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    assert [r["name"] for r in written] == ["'" + name for name in FORMULAS] + ["Meadow Kite - red"]
    assert [r["error"] for r in written[:-1]] == ["'" + name for name in FORMULAS]
    assert written[0]["description"] == 'A kite named =HYPERLINK("http://evil.example","x").'  # not at the start
    assert written[0]["cost_usd"] == "0.25"
    kept = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["name"] for r in kept] == [*FORMULAS, "Meadow Kite - red"]
