"""What the graph holds: node and edge records, their types and kinds, and how node ids are spelled.

Outputs and requests have random ids (``contentmill.ids.new_id``); the nodes many outputs share have ids
made from what they name, so every worker writes the same node for the same product field or model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from contentmill.ledger.records import utcnow

Vector = npt.NDArray[np.float32]

# node types
ENTITY, FIELD, REQUEST, OUTPUT, TEMPLATE, MODEL = "entity", "field", "request", "output", "template", "model"
NODE_TYPES = (ENTITY, FIELD, REQUEST, OUTPUT, TEMPLATE, MODEL)
OUTPUT_KINDS = ("text", "audio", "video", "subtitle", "image")

# edge kinds, each drawn source -> target
PRODUCED = "produced"  # request -> output
DERIVED_FROM = "derived_from"  # audio -> script, video -> audio / slides
DESCRIBES = "describes"  # output -> entity
USES_FIELD = "uses_field"  # output -> field (attrs: the value it was made from)
SIMILAR_TO = "similar_to"  # output <-> output (attrs: score), one edge each way
SUPERSEDES = "supersedes"  # new version -> stale one
FIELD_OF = "field_of"  # field -> entity
USES_TEMPLATE = "uses_template"  # output or request -> template version
MADE_BY = "made_by"  # output -> model
EDGE_KINDS = (PRODUCED, DERIVED_FROM, DESCRIBES, USES_FIELD, SIMILAR_TO, SUPERSEDES, FIELD_OF, USES_TEMPLATE,
              MADE_BY)

PREVIEW_CHARS = 300  # what the in-memory graph keeps of a node's text; the full text stays in the store


def entity_node(entity_id: str) -> str:
    return f"entity:{entity_id}"


def field_node(entity_id: str, name: str) -> str:
    return f"field:{entity_id}:{name}"


def template_node(template: str) -> str:
    return f"template:{template}"


def model_node(model: str) -> str:
    return f"model:{model}"


@dataclass(frozen=True, slots=True)
class Node:
    """A node as written: the columns the store indexes, free ``attrs``, and an optional embedding."""

    id: str
    type: str
    kind: str = ""
    language: str | None = None
    entity: str | None = None
    model: str | None = None
    template: str | None = None
    cost_usd: float = 0.0
    location: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    text: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    vector: Vector | None = None
    vector_model: str | None = None


@dataclass(frozen=True, slots=True)
class Edge:
    src: str
    dst: str
    kind: str
    attrs: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class StoredNode:
    """A node read back for catching up: its text cut to a preview, with the change number that wrote it."""

    node: Node
    seq: int


@dataclass(frozen=True, slots=True)
class StoredEdge:
    edge: Edge
    seq: int


@dataclass(frozen=True, slots=True)
class Changes:
    """Everything written after one change number, up to ``high`` (the next call starts there)."""

    high: int
    nodes: list[StoredNode]
    edges: list[StoredEdge]
