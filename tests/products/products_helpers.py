"""Small catalogs in the sample catalog's columns, for the product-descriptions tests."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

COLUMNS = ("Uniq Id", "Product Name", "Brand Name", "Category", "Selling Price", "About Product",
           "Product Specification", "Stock")
SHARED_CATALOG = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "amazon-products-1k.csv"
KEY = "sk-products-test-0123456789"

_KINDS = ("Wooden Puzzle", "Plush Bear", "Kite", "Water Bottle", "Board Game", "Craft Kit", "Toy Car", "Yo-Yo")
_MATERIALS = ("bamboo", "cotton", "steel", "maple wood", "recycled plastic", "wool")


def product_row(n: int, **changes: str) -> dict[str, str]:
    """A plausible product; every value depends on ``n`` so products differ."""
    kind = _KINDS[n % len(_KINDS)]
    price = 3.5 + (n * 7.25) % 140  # from a few dollars (light) to over 95 (premium)
    row = {
        "Uniq Id": f"p{n:04d}",
        "Product Name": f"Meadow {kind} Model {n}",
        "Brand Name": "Meadowlark" if n % 3 else "",
        "Category": f"Toys & Games | {kind}s",
        "Selling Price": f"${price:.2f}",
        "About Product": f"Made of {_MATERIALS[n % len(_MATERIALS)]}. Fits ages {3 + n % 9} and up. "
                         f"Comes in a box of {1 + n % 4}.",
        "Product Specification": f"Weight: {10 + n % 50} ounces | Size: {5 + n % 20} x {2 + n % 7} inches",
        "Stock": str(100 + n),
    }
    row.update(changes)
    return row


def write_catalog(path: Path, rows: Sequence[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path
