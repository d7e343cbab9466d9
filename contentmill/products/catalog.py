"""Reading a product catalog (CSV or JSONL) into products, and the rows that cannot be used into errors.

A product's id is its id column where the catalog has one, else a digest of its name and brand, so the same
product keeps its id from one night's catalog to the next. A row without a name, a JSONL line that is not an
object, a CSV row with more cells than the header, a cell (JSONL: a line) over CELL_LIMIT, or a repeated id is
reported with its reason and skipped: the rest of the catalog still runs. The file is read in pieces, so no
cell is held whole beyond the limit, and a run reads products as it needs them (``iter_catalog``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from contentmill.errors import ConfigError
from contentmill.products.config import Columns, Packing

_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_PRICE = re.compile(r"([$€£¥]?)\s*(\d[\d,]*(?:\.\d+)?)")
_TRUTHY = {"1", "true", "yes", "y", "x", "on"}
# The longest cell a catalog may hold, in characters (in JSONL, the longest line): far above any product text a
# description is written from (prompts cut about and specs to a few hundred characters), low enough that a broken
# cell (a file pasted into a column, a quote never closed) is reported as its row's error and skipped rather than
# held in memory. A cell over it is read past in pieces of _PIECE characters.
CELL_LIMIT = 16 * 1024 * 1024
_PIECE = 1024 * 1024
_UNQUOTED_END = re.compile(r"[,\r\n]")
_START, _UNQUOTED, _QUOTED, _QUOTE_IN_QUOTED = range(4)  # where a CSV reader is within a cell
csv.field_size_limit(CELL_LIMIT)


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
class ProductCatalog:
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


def _too_long(what: str, length: int) -> str:
    return f"{what} holds {length:,} characters, over the limit of {CELL_LIMIT:,}: shorten it or leave it out"


def csv_records(handle: TextIO, piece_chars: int = _PIECE) -> Iterator[tuple[str, dict[int, int]]]:
    """The records of a CSV stream as the csv module splits them (comma, double quotes, a quote that does not
    open a cell taken as text), each with its cells over CELL_LIMIT left empty and their lengths by cell number.

    Read in pieces of ``piece_chars``: a cell is kept only while it is within the limit, so a cell of any
    size is skipped without being held whole.
    """
    kept: list[str] = []  # the record so far, cells over the limit left empty
    cell: list[str] = []  # the current cell as written (quotes included)
    length, index, state, drop_lf = 0, 0, _START, False
    over: dict[int, int] = {}

    def add(text: str, counted: int) -> None:
        nonlocal cell, length
        length += counted
        if length > CELL_LIMIT:
            cell = []
        elif text:
            cell.append(text)

    def close_cell(end: str) -> None:
        nonlocal cell, length, index
        if length > CELL_LIMIT:
            over[index] = length
        else:
            kept.extend(cell)
        kept.append(end)
        cell, length, index = [], 0, index + 1

    while piece := handle.read(piece_chars):
        i, n = 0, len(piece)
        if drop_lf and piece[0] == "\n":
            i = 1  # the rest of a CR LF split between two pieces
        drop_lf = False
        while i < n:
            if state == _QUOTED:
                j = piece.find('"', i)
                stop = n if j < 0 else j
                add(piece[i:stop], stop - i)
                if j >= 0:
                    add('"', 0)
                    state = _QUOTE_IN_QUOTED
                i = stop + 1
                continue
            char = piece[i]
            if state == _QUOTE_IN_QUOTED and char == '"':
                add('"', 1)  # a doubled quote is one quote of the cell
                state, i = _QUOTED, i + 1
                continue
            if state == _START and char == '"':
                add('"', 0)
                state, i = _QUOTED, i + 1
                continue
            found = _UNQUOTED_END.search(piece, i)
            j = found.start() if found else n
            add(piece[i:j], j - i)
            state, i = _UNQUOTED, j
            if j == n:
                break
            if piece[j] == ",":
                close_cell(",")
                state, i = _START, j + 1
                continue
            end = "\r\n" if piece.startswith("\r\n", j) else piece[j]
            drop_lf = end == "\r" and j + 1 == n
            close_cell(end)
            yield "".join(kept), over
            kept, over, index, state, i = [], {}, 0, _START, j + len(end)
    if cell or kept or state != _START:
        close_cell("")
        yield "".join(kept), over


def _csv_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | None, str | None]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        records = csv_records(handle)
        first = next(records, None)
        if first is not None and first[1]:
            raise ConfigError(f"{path}: {_too_long('a cell of the header row', max(first[1].values()))}")
        header = _cells(first[0]) if first is not None else None
        if not header or isinstance(header, str):
            raise ConfigError(f"{path} has no header row: the first line must name the columns")
        width, number = len(header), 0
        for text, over in records:
            cells = _cells(text)
            if cells == [] and not over:
                continue  # a blank line, as csv.DictReader skips it
            number += 1
            if isinstance(cells, str):
                yield number, None, cells
                continue
            raw = dict(zip(header, cells, strict=False))
            if over:
                index, size = next(iter(over.items()))
                name = repr(header[index]) if index < width else f"{index + 1} (beyond the header)"
                yield number, raw, _too_long(f"column {name}", size)
            elif len(cells) > width:
                yield number, raw, f"unparsable: {len(cells)} cells where the header names {width}"
            else:
                yield number, raw, None


def _cells(text: str) -> list[str] | str:
    """The cells of one record, or why it cannot be read."""
    try:
        return next(csv.reader((text,)), [])
    except csv.Error as exc:
        return f"unparsable: {exc}"


def _lines(handle: TextIO) -> Iterator[tuple[str | None, int]]:
    """Each line with its length, read in pieces: a line over CELL_LIMIT is None, never held whole."""
    while piece := handle.readline(_PIECE):
        parts: list[str] | None = [piece]
        length = len(piece)
        while not piece.endswith("\n") and (piece := handle.readline(_PIECE)):
            length += len(piece)
            if parts is not None:
                parts.append(piece)
                parts = parts if length <= CELL_LIMIT else None
        yield ("".join(parts) if parts is not None else None), length


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | None, str | None]]:
    with path.open(encoding="utf-8") as handle:
        for number, (line, length) in enumerate(_lines(handle), start=1):
            if line is None:
                yield number, None, _too_long("the line", length)
                continue
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, None, f"unparsable: not JSON ({exc.msg})"
            except ValueError as exc:  # e.g. an integer of more digits than Python converts
                yield number, None, f"unparsable: {exc}"
            except RecursionError:
                yield number, None, "unparsable: arrays or objects nested too deeply"
            else:
                yield (number, raw, None) if isinstance(raw, dict) else (
                    number, None, "unparsable: a JSON line must be an object")


def catalog_digest(path: Path) -> str:
    """A digest of the file's bytes: a rerun of the same file resumes the same run."""
    if not path.is_file():
        raise ConfigError(f"no catalog file at {path}: give the path of a CSV or JSONL catalog")
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()[:16]


def iter_catalog(path: Path, columns: Columns, limit: int | None = None) -> Iterator[Product | RowError]:
    """The products and row errors of a CSV or JSONL catalog (by extension: .jsonl/.ndjson are JSON lines), in
    file order, read as they are needed: only the ids seen so far are held, to report a repeated one."""
    if not path.is_file():
        raise ConfigError(f"no catalog file at {path}: give the path of a CSV or JSONL catalog")
    rows = _jsonl_rows(path) if path.suffix.lower() in (".jsonl", ".ndjson") else _csv_rows(path)
    seen: dict[str, int] = {}
    for number, raw, problem in rows:
        if limit is not None and len(seen) >= limit:
            break
        found = to_product(raw, number, columns) if problem is None and raw is not None else RowError(
            number, problem or "unparsable", (_text(raw, columns.id) or None) if raw else None)
        if isinstance(found, Product) and found.id in seen:
            found = RowError(number, f"duplicate id {found.id} (first at row {seen[found.id]})", found.id)
        if isinstance(found, Product):
            seen[found.id] = number
        yield found


def read_catalog(path: Path, columns: Columns, limit: int | None = None) -> ProductCatalog:
    """The whole catalog in memory (estimates, tests); a run reads it with ``iter_catalog``."""
    catalog = ProductCatalog(digest=catalog_digest(path))
    for found in iter_catalog(path, columns, limit):
        if isinstance(found, RowError):
            catalog.errors.append(found)
        else:
            catalog.products.append(found)
    return catalog
