"""Nightly reruns: unchanged products cost nothing, and when 3 fields change across 10 of 100 products only
the outputs made from those fields are written again, each new version superseding the old one in the graph."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from products_helpers import product_row, write_catalog

from contentmill.flows.product_descriptions import product_descriptions
from contentmill.knowledge_graph import KnowledgeGraph
from contentmill.knowledge_graph.records import SUPERSEDES, entity_node
from contentmill.products.catalog import to_product
from contentmill.products.config import Columns, Packing
from contentmill.settings import load_settings
from contentmill.testing.harness import Upstream

pytestmark = pytest.mark.usefixtures("prefect_api")
CHANGES = {  # product -> (catalog column, the field it feeds, new value)
    **{n: ("Selling Price", "price", f"${n + 0.99:.2f}") for n in (3, 17, 29, 41)},
    **{n: ("About Product", "about", "Made of oak. Fits ages 12 and up.") for n in (52, 64, 77)},
    **{n: ("Brand Name", "brand", "Brightfield") for n in (80, 91, 98)},
}


def current_outputs(graph: KnowledgeGraph, product: str) -> list[str]:
    return [src for src, _dst, kind in graph.graph.in_edges(entity_node(product), keys=True)
            if kind == "describes" and not graph.graph.nodes[src].get("superseded_by")]


async def test_only_outputs_made_from_changed_fields_are_regenerated_and_link_to_their_old_version(
        shop: Callable[..., Upstream], tmp_path: Path) -> None:
    server = shop()
    rows = [product_row(n) for n in range(100)]
    catalog = write_catalog(tmp_path / "catalog.csv", rows)
    first = await product_descriptions(catalog=str(catalog), out=str(tmp_path / "first.jsonl"))
    assert first["done"] == 100 and server.stats()["items"] == 100

    server.reset()
    again = await product_descriptions(catalog=str(catalog), out=str(tmp_path / "again.jsonl"))
    assert (again["cached"], again["cost_usd"]) == (100, 0) and server.stats()["requests"] == 0

    changed_rows = [dict(row) for row in rows]
    for n, (column, _field, value) in CHANGES.items():
        changed_rows[n][column] = value
    for n in range(10, 20):  # a column no description is made from
        changed_rows[n]["Stock"] = "0"
    write_catalog(catalog, changed_rows)
    with KnowledgeGraph.open(load_settings()) as graph:
        before = {f"p{n:04d}": current_outputs(graph, f"p{n:04d}") for n in range(100)}
        stale = set()
        for n in range(100):
            product = to_product(changed_rows[n], n + 1, Columns())
            stale |= {s.id for s in graph.stale_outputs(product.id, product.fields(Packing()))}
    assert stale == {before[f"p{n:04d}"][0] for n in CHANGES}  # the graph finds exactly the ten

    server.reset()
    out = tmp_path / "changed.jsonl"
    third = await product_descriptions(catalog=str(catalog), out=str(out))
    assert (third["done"], third["cached"]) == (100, 90)
    assert sorted(server.stats()["item_ids"]) == sorted(f"p{n:04d}" for n in CHANGES)  # by provider calls
    found = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    for n, (_column, field, _value) in CHANGES.items():
        assert found[f"p{n:04d}"]["changed"] == [field] and not found[f"p{n:04d}"]["cached"]
    with KnowledgeGraph.open(load_settings()) as graph:
        for n in range(100):
            product = f"p{n:04d}"
            (now,) = current_outputs(graph, product)
            if n in CHANGES:
                (old,) = before[product]
                assert now != old and graph.graph.has_edge(now, old, key=SUPERSEDES)
                assert graph.graph.nodes[old]["superseded_by"] == now
            else:
                assert [now] == before[product]
