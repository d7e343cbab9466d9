"""Search results: what a person or the reuse flow needs to judge and fetch a prior output."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import networkx as nx

from contentmill.knowledge_graph.index import Neighbour
from contentmill.knowledge_graph.lineage import chain


@dataclass(frozen=True, slots=True)
class ChainLink:
    id: str
    kind: str


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float  # cosine similarity to the query
    kind: str
    text: str  # the full text (or transcript, caption) of the output
    entity: str | None
    chain: tuple[ChainLink, ...]  # the script -> narration -> video chain it belongs to
    cost_usd: float
    location: str | None  # where the bytes are: a storage path or URL
    language: str | None
    model: str | None
    template: str | None
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def hits(graph: nx.MultiDiGraph, found: list[Neighbour], texts: dict[str, str]) -> list[Hit]:
    """Hits for index neighbours, with attributes from the graph and full texts from the store."""
    result = []
    for neighbour in found:
        attrs = graph.nodes[neighbour.id]
        links = tuple(ChainLink(n, graph.nodes[n].get("kind", "")) for n in chain(graph, neighbour.id))
        result.append(Hit(
            id=neighbour.id, score=round(neighbour.score, 6), kind=attrs.get("kind", ""),
            text=texts.get(neighbour.id, attrs.get("preview", "")), entity=attrs.get("entity"), chain=links,
            cost_usd=float(attrs.get("cost_usd", 0.0)), location=attrs.get("location"),
            language=attrs.get("language"), model=attrs.get("model"), template=attrs.get("template"),
            created_at=attrs.get("created_at", ""),
        ))
    return result
