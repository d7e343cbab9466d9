"""GraphML and node-link JSON exports read back as the graph they came from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from contentmill.knowledge_graph import KnowledgeGraph, OutputSpec, RequestFacts, read_export, write_export


@pytest.fixture
def graph(open_graph: Callable[..., KnowledgeGraph], sqlite_url: str) -> nx.MultiDiGraph:
    kg = open_graph(sqlite_url)
    kg.add_entity("SKU-9", name="Mug 350 ml", fields={"capacity": "350 ml", "dishwasher_safe": True})
    request = RequestFacts(
        "text",
        "Describe the mug, not dishwasher safe",
        template="product_description@2",
        entity="SKU-9",
        fields={"capacity": "350 ml", "price": 12.5, "sizes": ["S", "M"]},
    )
    kg.record(
        request,
        [
            OutputSpec("text", "A 350 ml mug. 中文也可以。", model="local:gemma-3-270m", cost_usd=0.001),
            OutputSpec("audio", "A 350 ml mug.", derived_from=[0], scene=1, location="/data/mug.wav"),
        ],
    )
    return kg.graph


def comparable(graph: nx.MultiDiGraph) -> tuple[dict[str, Any], dict[Any, Any]]:
    nodes = {n: {k: v for k, v in a.items() if v is not None} for n, a in graph.nodes(data=True)}
    edges = {(s, d, k): dict(a) for s, d, k, a in graph.edges(keys=True, data=True)}
    return nodes, edges


@pytest.mark.parametrize("fmt", ["graphml", "json"])
def test_an_export_reads_back_unchanged(graph: nx.MultiDiGraph, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"graph.{fmt}"
    write_export(graph, path, fmt)  # type: ignore[arg-type]
    back = read_export(path, fmt)  # type: ignore[arg-type]
    assert isinstance(back, nx.MultiDiGraph)
    assert comparable(back) == comparable(graph)
    request = next(n for n, a in back.nodes(data=True) if a["type"] == "request")
    assert back.nodes[request]["fields"]["sizes"] == ["S", "M"]
    assert back.nodes["entity:SKU-9"]["fields"]["dishwasher_safe"] is True


def test_graphml_opens_in_any_graphml_reader(graph: nx.MultiDiGraph, tmp_path: Path) -> None:
    path = tmp_path / "graph.graphml"
    write_export(graph, path, "graphml")
    plain = nx.read_graphml(path)  # what Gephi or yEd see: scalars, nested values as JSON text
    assert plain.number_of_nodes() == graph.number_of_nodes()
    assert '"dishwasher_safe": true' in plain.nodes["entity:SKU-9"]["fields"]
