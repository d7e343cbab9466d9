"""The graph as GraphML (for Gephi, yEd, Cytoscape) or node-link JSON, and read back as a MultiDiGraph.

GraphML holds scalars of one type per attribute, so an attribute that is not (a dict of fields, a list of
constraints, a field value that is sometimes a number and sometimes text) is written as JSON text and named
in the graph attributes ``json_node_attributes`` / ``json_edge_attributes``, which ``read_export`` decodes.
Embeddings are not exported: they belong to the store and the model that made them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, Literal

import networkx as nx

from contentmill.errors import GraphError

Format = Literal["graphml", "json"]
FORMATS: tuple[Format, ...] = ("graphml", "json")
_SCALARS = (str, int, float, bool)


def _json_attributes(items: Iterable[dict[str, Any]]) -> set[str]:
    """Attributes that are not one scalar type everywhere."""
    types: dict[str, set[type]] = {}
    for attrs in items:
        for name, value in attrs.items():
            if value is not None:
                types.setdefault(name, set()).add(type(value))
    return {name for name, seen in types.items()
            if len(seen) > 1 or not issubclass(next(iter(seen)), _SCALARS)}


def _encoded(attrs: dict[str, Any], as_json: set[str]) -> dict[str, Any]:
    return {
        name: json.dumps(value, ensure_ascii=False, sort_keys=True) if name in as_json else value
        for name, value in attrs.items() if value is not None
    }


def graphml_ready(graph: nx.MultiDiGraph) -> nx.MultiDiGraph:
    """A copy whose attributes GraphML can hold, with the JSON-encoded ones named."""
    node_json = _json_attributes(attrs for _n, attrs in graph.nodes(data=True))
    edge_json = _json_attributes(attrs for _s, _d, attrs in graph.edges(data=True))
    ready = nx.MultiDiGraph(json_node_attributes=",".join(sorted(node_json)),
                            json_edge_attributes=",".join(sorted(edge_json)))
    ready.add_nodes_from((node, _encoded(attrs, node_json)) for node, attrs in graph.nodes(data=True))
    edges = graph.edges(keys=True, data=True)
    ready.add_edges_from((s, d, k, _encoded(attrs, edge_json)) for s, d, k, attrs in edges)
    return ready


def write_export(graph: nx.MultiDiGraph, target: Path | IO[bytes], fmt: Format) -> None:
    """Write the graph to a path or a binary stream."""
    if fmt == "graphml":
        nx.write_graphml(graphml_ready(graph), target, named_key_ids=True)
        return
    if fmt != "json":
        raise GraphError(f"export format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    data = nx.node_link_data(graph, edges="edges")
    payload = json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"
    if isinstance(target, Path):
        target.write_bytes(payload)
    else:
        target.write(payload)


def read_export(source: Path, fmt: Format) -> nx.MultiDiGraph:
    """Read an export back with the attributes it was written with."""
    if fmt == "json":
        data = json.loads(source.read_text(encoding="utf-8"))
        graph: nx.MultiDiGraph = nx.node_link_graph(data, directed=True, multigraph=True, edges="edges")
        return graph
    raw = nx.read_graphml(source, force_multigraph=True)
    node_json = {n for n in raw.graph.pop("json_node_attributes", "").split(",") if n}
    edge_json = {n for n in raw.graph.pop("json_edge_attributes", "").split(",") if n}
    graph = nx.MultiDiGraph(**raw.graph)
    graph.add_nodes_from((node, _decoded(attrs, node_json)) for node, attrs in raw.nodes(data=True))
    edges = raw.edges(keys=True, data=True)
    graph.add_edges_from((s, d, k, _decoded(attrs, edge_json)) for s, d, k, attrs in edges)
    return graph


def _decoded(attrs: dict[str, Any], as_json: set[str]) -> dict[str, Any]:
    return {name: json.loads(value) if name in as_json else value for name, value in attrs.items()}
