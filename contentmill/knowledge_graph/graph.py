"""The knowledge graph of prior outputs: a networkx ``MultiDiGraph`` kept in step with the store.

Many workers write to one store. Each process holds the graph, a vector index over output embeddings and
an index of prior requests in memory, and catches up by reading only what was written after the last change
number it applied (``GraphStore.changes``), so no call reloads the graph. Writers embed what they write;
readers never embed stored texts again. One instance is meant for one thread.

Nodes: entity (a product, a topic), field (one field of an entity), request, output (text, audio, video,
subtitle, image), template (a template version), model. Edges: see ``records.py``; the key of an edge in
the MultiDiGraph is its kind. The class stays whole: every method keeps the in-memory graph, the vector
indexes and the store in step, and splitting it would spread that one invariant over several modules.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import networkx as nx
import numpy as np

from contentmill.errors import GraphError
from contentmill.ids import new_id
from contentmill.knowledge_graph import lineage
from contentmill.knowledge_graph.dedupe import REUSE_THRESHOLD, Decision, Match, RequestFacts, RequestIndex
from contentmill.knowledge_graph.embeddings import SentenceEmbedder, TextEmbedder
from contentmill.knowledge_graph.index import EXACT_LIMIT, VectorIndex
from contentmill.knowledge_graph.records import (
    DERIVED_FROM,
    DESCRIBES,
    ENTITY,
    FIELD,
    FIELD_OF,
    MADE_BY,
    MODEL,
    OUTPUT,
    PREVIEW_CHARS,
    PRODUCED,
    REQUEST,
    SIMILAR_TO,
    SUPERSEDES,
    TEMPLATE,
    USES_FIELD,
    USES_TEMPLATE,
    Edge,
    Node,
    StoredNode,
    Vector,
    entity_node,
    field_node,
    model_node,
    template_node,
)  # fmt: skip
from contentmill.knowledge_graph.search import Hit, hits
from contentmill.knowledge_graph.store import GraphStore, graph_url
from contentmill.ledger.records import utcnow
from contentmill.settings import Settings, get_settings

log = logging.getLogger("contentmill.knowledge_graph")

SIMILAR_MIN = 0.85  # outputs at least this close get similar_to edges when written
SIMILAR_LINKS = 3


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """One output to record. ``derived_from`` names output ids, or by position outputs of the same call."""

    kind: str  # text, audio, video, subtitle, image
    text: str = ""  # the content, transcript or caption: what search embeds and shows
    language: str | None = None  # default: the request's
    model: str | None = None  # provider:model that made it
    cost_usd: float = 0.0
    location: str | None = None  # where its bytes are: a storage path or URL
    template: str | None = None  # default: the request's
    entity: str | None = None  # default: the request's
    fields_used: Mapping[str, Any] | None = None  # entity fields and values it was made from (request's)
    derived_from: Sequence[str | int] = ()
    scene: int | None = None  # the scene of its source it renders, recorded on derived_from edges
    id: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    request: str | None
    outputs: tuple[str, ...]
    seq: int


def _partition(kind: str, language: str | None) -> tuple[str, str]:
    return kind, language or ""


def node_attrs(node: Node) -> dict[str, Any]:
    """The attributes a node carries in the in-memory graph (its text cut to a preview)."""
    attrs: dict[str, Any] = dict(node.attrs)
    attrs.update(type=node.type, kind=node.kind, cost_usd=node.cost_usd,
                 created_at=node.created_at.isoformat())
    for name in ("language", "entity", "model", "template", "location"):
        value = getattr(node, name)
        if value is not None:
            attrs[name] = value
    if node.text:
        attrs["preview"] = node.text[:PREVIEW_CHARS]
    return attrs


class KnowledgeGraph:
    """Prior requests and outputs with their lineage: record, reuse, search, and find what went stale."""

    def __init__(
        self,
        store: GraphStore,
        embedder: TextEmbedder | None = None,
        *,
        threshold: float = REUSE_THRESHOLD,
        poll_interval_s: float = 1.0,
        exact_limit: int = EXACT_LIMIT,
        vectors: bool = True,
        background_index: bool = True,
    ) -> None:
        self.store = store
        self._embedder = embedder
        self.threshold = threshold
        self.poll_interval_s = poll_interval_s
        self.vectors = vectors
        self.graph = nx.MultiDiGraph()
        self.requests = RequestIndex()
        self.seq = 0
        self._exact_limit, self._background_index = exact_limit, background_index
        self._index: VectorIndex | None = None
        self._polled_at = float("-inf")
        self._foreign_vectors = 0

    @classmethod
    def open(cls, settings: Settings | None = None, **options: Any) -> KnowledgeGraph:
        """The graph at ``graph_url(settings)``, caught up; threshold, polling and embedding threads come from
        the settings unless ``options`` name them."""
        s = settings or get_settings()
        options.setdefault("threshold", s.graph_reuse_threshold)
        options.setdefault("poll_interval_s", s.graph_poll_interval_s)
        if "embedder" not in options and s.embedding_threads is not None:
            options["embedder"] = SentenceEmbedder(threads=s.embedding_threads)
        graph = cls(GraphStore(graph_url(s)), **options)
        graph.catch_up()
        return graph

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
        self.store.close()

    def __enter__(self) -> KnowledgeGraph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def embedder(self) -> TextEmbedder:
        if self._embedder is None:
            self._embedder = embedder = SentenceEmbedder()
            return embedder
        return self._embedder

    @property
    def index(self) -> VectorIndex:
        if self._index is None:
            self._index = VectorIndex(self.embedder.dimensions, exact_limit=self._exact_limit,
                                      background=self._background_index)
        return self._index

    # catching up -------------------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply every change written since the last call, by any process; returns how many rows it read."""
        changes = self.store.changes(self.seq)
        self._polled_at = time.monotonic()
        for stored in changes.nodes:
            self._apply_node(stored)
        if self.vectors:
            self._index_outputs([s.node for s in changes.nodes if s.node.type == OUTPUT])
        for stored_edge in changes.edges:
            edge = stored_edge.edge
            self.graph.add_edge(edge.src, edge.dst, key=edge.kind, kind=edge.kind, **edge.attrs)
        self.seq = changes.high
        return len(changes.nodes) + len(changes.edges)

    def refresh(self) -> None:
        """Catch up when ``poll_interval_s`` has passed since the last look at the store."""
        if time.monotonic() - self._polled_at >= self.poll_interval_s:
            self.catch_up()

    def _apply_node(self, stored: StoredNode) -> None:
        node = stored.node
        if node.id in self.graph:
            self.graph.nodes[node.id].clear()
        self.graph.add_node(node.id, **node_attrs(node))
        if self.vectors and node.type == REQUEST and node.vector is not None and self._comparable(node):
            self.requests.add(node.id, str(node.attrs.get("key", "")), node.vector)

    def _comparable(self, node: Node) -> bool:
        """Vectors from another embedding model cannot be compared with this one's."""
        if node.vector_model == self.embedder.name:
            return True
        self._foreign_vectors += 1
        if self._foreign_vectors == 1:
            log.warning("graph node %s was embedded with %s, not %s: left out of search and reuse",
                        node.id, node.vector_model, self.embedder.name)
        return False

    def _index_outputs(self, outputs: list[Node]) -> None:
        batches: dict[Hashable, tuple[list[str], list[Vector]]] = {}
        for node in outputs:
            if node.attrs.get("superseded_by") or node.vector is None or not self._comparable(node):
                if node.id in self.index:
                    self.index.remove(node.id)
                continue
            ids, vectors = batches.setdefault(_partition(node.kind, node.language), ([], []))
            ids.append(node.id)
            vectors.append(node.vector)
        for partition, (ids, vectors) in batches.items():
            self.index.add(ids, np.stack(vectors), partition)

    # writing -----------------------------------------------------------------------------------------

    def add_entity(self, entity_id: str, kind: str = "product", name: str | None = None,
                   fields: Mapping[str, Any] | None = None) -> str:
        """Create or update an entity node (its current field values are kept as an attribute)."""
        attrs: dict[str, Any] = {"entity_id": entity_id, "fields": dict(fields or {})}
        if name is not None:
            attrs["name"] = name
        node = Node(entity_node(entity_id), ENTITY, kind, entity=entity_id, text=name, attrs=attrs)
        self.store.write([node])
        self.catch_up()
        return node.id

    def record(self, request: RequestFacts | None, outputs: Sequence[OutputSpec], *,
               request_id: str | None = None) -> Recorded:
        """Write a request, its outputs, their embeddings and the edges to their inputs in one transaction."""
        ids = [o.id or new_id() for o in outputs]
        req_id = (request_id or new_id()) if request is not None else None
        texts = [request.embedded_text()] if request is not None else []
        slot = {}
        for position, spec in enumerate(outputs):
            if spec.text:
                slot[position] = len(texts)
                texts.append(spec.text)
        vectors = self.embedder.encode(texts) if texts else None
        nodes: list[Node] = []
        ensure: list[Node] = []
        edges: list[Edge] = []
        if request is not None and req_id is not None and vectors is not None:
            nodes.append(self._request_node(req_id, request, vectors[0]))
            if request.template:
                ensure.append(Node(template_node(request.template), TEMPLATE, template=request.template))
                edges.append(Edge(req_id, template_node(request.template), USES_TEMPLATE))
        for position, (output_id, spec) in enumerate(zip(ids, outputs, strict=True)):
            vector = vectors[slot[position]] if vectors is not None and position in slot else None
            node, linked, shared = self._output(output_id, spec, request, vector, ids)
            nodes.append(node)
            ensure.extend(shared)
            edges.extend(linked)
            if req_id is not None:
                edges.append(Edge(req_id, output_id, PRODUCED))
        seq = self.store.write(nodes, edges, ensure=ensure)
        self.catch_up()
        return Recorded(req_id, tuple(ids), seq)

    def _request_node(self, req_id: str, request: RequestFacts, vector: Vector) -> Node:
        attrs = {"key": request.key(), "constraints": sorted(request.constraints()),
                 "fields": dict(request.fields)}
        return Node(req_id, REQUEST, request.kind, language=request.language, entity=request.entity,
                    template=request.template or None, text=request.text, attrs=attrs, vector=vector,
                    vector_model=self.embedder.name)

    def _output(self, output_id: str, spec: OutputSpec, request: RequestFacts | None, vector: Vector | None,
                batch: list[str]) -> tuple[Node, list[Edge], list[Node]]:
        """An output node, its edges, and the shared nodes (entity, fields, template, model) it needs."""
        language = spec.language or (request.language if request else None)
        entity = spec.entity or (request.entity if request else None)
        template = spec.template or (request.template if request else None) or None
        fields = spec.fields_used if spec.fields_used is not None else (request.fields if request else {})
        node = Node(
            output_id, OUTPUT, spec.kind, language=language, entity=entity, model=spec.model,
            template=template, cost_usd=spec.cost_usd, location=spec.location,
            created_at=spec.created_at or utcnow(),
            text=spec.text or None, attrs=dict(spec.attrs), vector=vector,
            vector_model=self.embedder.name if vector is not None else None,
        )
        edges: list[Edge] = []
        shared: list[Node] = []
        if entity:
            shared.append(Node(entity_node(entity), ENTITY, entity=entity, attrs={"entity_id": entity}))
            edges.append(Edge(output_id, entity_node(entity), DESCRIBES))
            for name, value in fields.items():
                field_id = field_node(entity, name)
                shared.append(Node(field_id, FIELD, entity=entity, attrs={"name": name}))
                edges += [Edge(field_id, entity_node(entity), FIELD_OF),
                          Edge(output_id, field_id, USES_FIELD, {"field": name, "value": value})]
        if template:
            shared.append(Node(template_node(template), TEMPLATE, template=template))
            edges.append(Edge(output_id, template_node(template), USES_TEMPLATE))
        if spec.model:
            shared.append(Node(model_node(spec.model), MODEL, model=spec.model))
            edges.append(Edge(output_id, model_node(spec.model), MADE_BY))
        scene = {} if spec.scene is None else {"scene": spec.scene}
        for source in spec.derived_from:
            source_id = batch[source] if isinstance(source, int) else source
            edges.append(Edge(output_id, source_id, DERIVED_FROM, scene))
        if vector is not None and self.vectors:
            edges.extend(self._similar(output_id, spec.kind, language, vector))
        return node, edges, shared

    def _similar(self, output_id: str, kind: str, language: str | None, vector: Vector) -> list[Edge]:
        """similar_to edges, both ways, to the closest outputs already known of the same kind and language."""
        partition = _partition(kind, language)
        near = self.index.search(vector, SIMILAR_LINKS, where=lambda key: key == partition)
        edges = []
        for neighbour in near:
            if neighbour.score >= SIMILAR_MIN and neighbour.id != output_id:
                score = {"score": round(neighbour.score, 6)}
                edges += [Edge(output_id, neighbour.id, SIMILAR_TO, score),
                          Edge(neighbour.id, output_id, SIMILAR_TO, score)]
        return edges

    def supersede(self, old: str, new: str) -> None:
        """Mark ``new`` as the version that replaces ``old``; ``old`` leaves search and reuse."""
        for node_id in (old, new):
            if node_id not in self.graph:
                self.catch_up()
            if node_id not in self.graph:
                raise GraphError(f"no output {node_id!r} in the graph at {self.store.url}")
        self.store.write(links=[Edge(new, old, SUPERSEDES)], merge={old: {"superseded_by": new}})
        self.catch_up()

    # reuse -------------------------------------------------------------------------------------------

    def find_duplicate(self, request: RequestFacts, *, record: bool = True) -> Match | None:
        """A prior output that serves this request (same hard constraints, similar text), or None."""
        return self.decide(request, record=record).match

    def decide(self, request: RequestFacts, *, record: bool = True) -> Decision:
        """Whether a prior output serves this request, with score and reason; stored when ``record``."""
        self.refresh()
        key = request.key()
        ranked = []
        if self.requests.count(key):  # no prior request under this key: nothing to embed the text for
            ranked = self.requests.ranked(key, self.embedder.encode([request.embedded_text()])[0])
        decision_id = new_id()
        match, reason = self._first_usable(ranked, request.kind, decision_id)
        score = match.score if match else (ranked[0][1] if ranked else None)
        decision = Decision(decision_id, key, match is not None, score, self.threshold, reason, match)
        if record:
            self._record_decision(request, decision)
        return decision

    def _first_usable(self, ranked: list[tuple[str, float]], kind: str,
                      decision_id: str) -> tuple[Match | None, str]:
        """The most similar prior request above the threshold whose output of ``kind`` is current."""
        if not ranked:
            return None, "no prior request with the same constraints"
        reason = f"closest prior request scores {ranked[0][1]:.3f}, below {self.threshold}"
        for request_id, score in ranked:
            if score < self.threshold:
                break
            output = self._current_output(request_id, kind)
            if output is None:
                reason = "the prior outputs were superseded"
                continue
            attrs = self.graph.nodes[output]
            match = Match(output, request_id, score, attrs["kind"], float(attrs.get("cost_usd", 0.0)),
                          attrs.get("location"), decision_id)
            return match, f"same constraints, similarity {score:.3f} >= {self.threshold}"
        return None, reason

    def _current_output(self, request_id: str, kind: str) -> str | None:
        made = [dst for _src, dst, k in self.graph.out_edges(request_id, keys=True) if k == PRODUCED]
        usable = [o for o in made
                  if self.graph.nodes[o].get("kind") == kind and lineage.is_current(self.graph, o)]
        return max(usable, key=lambda o: self.graph.nodes[o].get("created_at", ""), default=None)

    def _record_decision(self, request: RequestFacts, decision: Decision) -> None:
        match = decision.match
        self.store.add_decision({
            "id": decision.id, "ts": utcnow(), "request_key": decision.key, "kind": request.kind,
            "language": request.language, "entity": request.entity, "template": request.template,
            "text": request.text, "reused": decision.reused, "score": decision.score,
            "threshold": decision.threshold, "matched_request": match.request if match else None,
            "matched_output": match.output if match else None,
            "saved_usd": match.cost_usd if match else 0.0, "reason": decision.reason,
        })

    # reading -----------------------------------------------------------------------------------------

    def search(self, query: str, k: int = 10, kind: str | None = None,
               language: str | None = None) -> list[Hit]:
        """Current outputs closest in meaning to ``query``, optionally of one kind and language."""
        if not self.vectors:
            raise GraphError("this graph was opened without vectors; open it with vectors=True to search")
        self.refresh()
        vector = self.embedder.encode([query])[0]

        def where(key: Hashable) -> bool:
            kind_of, language_of = key if isinstance(key, tuple) else (None, None)
            return (kind is None or kind_of == kind) and (language is None or language_of == language)

        found = self.index.search(vector, k, where)
        return hits(self.graph, found, self.store.texts([n.id for n in found]))

    def stale_outputs(self, entity_id: str, changed: Iterable[str] | Mapping[str, Any], *,
                      include_derived: bool = False) -> list[lineage.Stale]:
        """Current outputs made from changed fields of an entity (see ``lineage.stale_outputs``)."""
        self.refresh()
        return lineage.stale_outputs(self.graph, entity_id, changed, include_derived=include_derived)

    def chain(self, output_id: str) -> list[str]:
        return lineage.chain(self.graph, output_id)

    def text(self, node_id: str) -> str | None:
        """The full text of a node (the graph holds previews)."""
        return self.store.texts([node_id]).get(node_id)
