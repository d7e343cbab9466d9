"""The rows a run writes, one per product, and the totals reported by tier and by category."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contentmill.files import atomic_target, write_atomic
from contentmill.metering import Usage

CSV_COLUMNS = ("id", "name", "category", "tier", "model", "description", "cost_usd", "cached", "reused_from",
               "error", "input_tokens", "output_tokens", "checks")
# What a spreadsheet runs as a formula when a cell starts with it (OWASP, CSV injection): such a cell is written
# with a single quote before it, which the spreadsheet shows as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Row:
    id: str
    name: str
    category: str
    tier: str  # the tier that wrote the description (the assigned one, or higher after failed checks)
    assigned_tier: str
    model: str | None = None
    description: str | None = None
    usage: dict[str, Any] = field(default_factory=lambda: Usage().as_dict())
    cost_usd: float = 0.0
    cached: bool = False  # nothing was paid: a prior output of the same product, or the gateway's cache
    reused_from: str | None = None  # the product whose output this one reuses
    checks: dict[str, str] = field(default_factory=dict)  # check -> "ok" or why it failed
    error: str | None = None
    attempts: list[str] = field(default_factory=list)  # e.g. "standard:packed:facts", "premium:alone:ok"
    changed: list[str] | None = None  # fields that changed since the output it replaces

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cost_usd"] = round(self.cost_usd, 10)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Row:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def tokens(self) -> int:
        return int(self.usage.get("input_tokens", 0)) + int(self.usage.get("output_tokens", 0))


def as_text_cell(value: Any) -> Any:
    """A text value a spreadsheet would run as a formula, quoted with a leading ``'``; anything else unchanged."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def write_rows(path: Path, rows: Iterable[Row]) -> None:
    """JSONL with the exact text, or CSV when the file name ends in .csv (usage flattened to token columns, checks
    as JSON, cells that would run as formulas quoted); written as ``rows`` come, whole or not at all."""
    as_csv = path.suffix.lower() == ".csv"
    with atomic_target(path) as partial, partial.open("w", newline="" if as_csv else None, encoding="utf-8") as out:
        if not as_csv:
            for row in rows:
                out.write(json.dumps(row.as_dict(), ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for row in rows:
                data = row.as_dict()
                cells = {**{k: data.get(k) for k in CSV_COLUMNS if k in data},
                         "input_tokens": row.usage.get("input_tokens", 0),
                         "output_tokens": row.usage.get("output_tokens", 0),
                         "checks": json.dumps(row.checks, ensure_ascii=False)}
                writer.writerow({k: as_text_cell(v) for k, v in cells.items()})
        out.flush()
        os.fsync(out.fileno())


def write_errors(path: Path, errors: Iterable[Mapping[str, Any]]) -> None:
    write_atomic(path, "".join(json.dumps(dict(e), ensure_ascii=False) + "\n" for e in errors), durable=True)


def _add(group: dict[str, dict[str, Any]], key: str, row: Row) -> None:
    entry = group.setdefault(key, {"items": 0, "done": 0, "failed": 0, "cached": 0, "reused": 0,
                                   "cost_usd": 0.0, "tokens": 0})
    entry["items"] += 1
    entry["done"] += row.error is None
    entry["failed"] += row.error is not None
    entry["cached"] += row.cached
    entry["reused"] += row.reused_from is not None
    entry["cost_usd"] += row.cost_usd
    entry["tokens"] += row.tokens


class Totals:
    """Items, outcomes, cost and tokens by tier and by top-level category, added up as rows go by."""

    def __init__(self) -> None:
        self.by_tier: dict[str, dict[str, Any]] = {}
        self.by_category: dict[str, dict[str, Any]] = {}

    def counting(self, rows: Iterable[Row]) -> Iterator[Row]:
        for row in rows:
            _add(self.by_tier, row.tier, row)
            _add(self.by_category, row.category, row)
            yield row

    def rounded(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        for group in (self.by_tier, self.by_category):
            for entry in group.values():
                entry["cost_usd"] = round(entry["cost_usd"], 8)
        return self.by_tier, self.by_category


def cost_table(by_tier: Mapping[str, Mapping[str, Any]], by_category: Mapping[str, Mapping[str, Any]]
               ) -> list[dict[str, Any]]:
    """One table for the Prefect artifact: a row per tier, then a row per category."""
    table = [{"group": "tier", "name": name, **values} for name, values in sorted(by_tier.items())]
    ranked = sorted(by_category.items(), key=lambda kv: -float(kv[1]["cost_usd"]))
    table += [{"group": "category", "name": name, **values} for name, values in ranked]
    return table
