"""Reading a product catalog (CSV or JSONL) into products, and the rows that cannot be used into errors.

A product's id is its id column where the catalog has one, else a digest of its name and brand, so the same
product keeps its id from one night's catalog to the next. A row without a name, a JSONL line that is not an
object, a CSV row with more cells than the header, or a repeated id is reported with its reason and skipped:
the rest of the catalog still runs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contentmill.errors import ConfigError
from contentmill.products.config import Columns, Packing

_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_PRICE = re.compile(r"([$€£¥]?)\s*(\d[\d,]*(?:\.\d+)?)")
_TRUTHY = {"1", "true", "yes", "y", "x", "on"}
csv.field_size_limit(16 * 1024 * 1024)


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    name: str
    row: int  # 1-based data row (CSV: after the header; JSONL: the line)
    brand: str = ""
    category: str = ""
    price: float | None = None
    price_text: str = ""
    about: str = ""
    specs: str = ""
    sku: str = ""
    flagged: bool = False
    language: str | None = None

    @property
    def top_category(self) -> str:
        return self.category.split("|")[0].strip() or "(none)"

    def fields(self, packing: Packing) -> dict[str, str]:
        """The fields a description is written from, with the values it sees: what a change of any of them
        invalidates, and what the prompt carries."""
        values = {
            "name": self.name,
            "brand": self.brand,
            "category": self.category,
            "price": self.price_text,
            "about": _cut(self.about, packing.about_chars),
            "specs": _cut(self.specs, packing.specs_chars),
        }
        return {name: value for name, value in values.items() if value}


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    reason: str
    id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "id": self.id, "reason": self.reason}


@dataclass(slots=True)
class Catalog:
    products: list[Product] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    digest: str = ""  # of the file's bytes: a rerun of the same file resumes the same run


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return cut[: cut.rfind(" ")] if " " in cut else cut


def parse_price(text: str) -> float | None:
    match = _NUMBER.search(text or "")
    if match is None:
        return None
    return float(match.group().replace(",", ""))


def price_text(text: str) -> str:
    """The price as a description may quote it: the first amount with its currency sign ("$39.95"), without
    whatever else a scraped column carries after it (a second price, markup)."""
    match = _PRICE.search(text or "")
    return f"{match.group(1)}{match.group(2)}" if match else ""


def product_id(name: str, brand: str) -> str:
    return hashlib.sha256(f"{name.strip().casefold()}|{brand.strip().casefold()}".encode()).hexdigest()[:16]


def _text(raw: Mapping[str, Any], column: str | None) -> str:
    if column is None:
        return ""
    value = raw.get(column)
    if value is None:
        return ""
    return " ".join(str(value).split())


def to_product(raw: Mapping[str, Any], row: int, columns: Columns) -> Product | RowError:
    name = _text(raw, columns.name)
    given_id = _text(raw, columns.id)
    if not name:
        return RowError(row, f"no product name (column {columns.name!r} is empty or missing)", given_id or None)
    brand = _text(raw, columns.brand)
    price = _text(raw, columns.price)
    return Product(
        id=given_id or product_id(name, brand),
        name=name,
        row=row,
        brand=brand,
        category=_text(raw, columns.category),
        price=parse_price(price),
        price_text=price_text(price),
        about=_text(raw, columns.about),
        specs=_text(raw, columns.specs),
        sku=_text(raw, columns.sku),
        flagged=_text(raw, columns.flag).casefold() in _TRUTHY,
        language=_text(raw, columns.language) or None,
    )


def _csv_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise ConfigError(f"{path} has no header row: the first line must name the columns")
        width = len(reader.fieldnames)
        for number, raw in enumerate(reader, start=1):
            extra = raw.get(None)
            if extra:
                yield number, f"unparsable: {width + len(extra)} cells where the header names {width}"
            else:
                yield number, raw


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, f"unparsable: not JSON ({exc.msg})"
                continue
            yield number, raw if isinstance(raw, dict) else "unparsable: a JSON line must be an object"


def read_catalog(path: Path, columns: Columns, limit: int | None = None) -> Catalog:
    """Products and row errors of a CSV or JSONL catalog (by extension: .jsonl/.ndjson are JSON lines)."""
    if not path.is_file():
        raise ConfigError(f"no catalog file at {path}: give the path of a CSV or JSONL catalog")
    catalog = Catalog(digest=hashlib.sha256(path.read_bytes()).hexdigest()[:16])
    rows = _jsonl_rows(path) if path.suffix.lower() in (".jsonl", ".ndjson") else _csv_rows(path)
    seen: dict[str, int] = {}
    for number, raw in rows:
        if limit is not None and len(catalog.products) >= limit:
            break
        found = RowError(number, raw) if isinstance(raw, str) else to_product(raw, number, columns)
        if isinstance(found, Product) and found.id in seen:
            found = RowError(number, f"duplicate id {found.id} (first at row {seen[found.id]})", found.id)
        if isinstance(found, RowError):
            catalog.errors.append(found)
            continue
        seen[found.id] = number
        catalog.products.append(found)
    return catalog
