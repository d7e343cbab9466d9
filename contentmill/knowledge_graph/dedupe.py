"""Near-duplicate requests: serve a request from a prior output instead of paying for it again.

A prior output is reused only when its request had exactly the same hard constraints (output kind, language,
template version, entity, the values of the fields the template uses, and the quantities, negations,
colours, names and codes in the text; see ``constraints.py``) and the embedding similarity of the two texts
reaches the threshold. The constraints become one key, so the candidates are the few prior requests under
that key, compared exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contentmill.knowledge_graph.constraints import field_constraints, read
from contentmill.knowledge_graph.records import Vector

# all-MiniLM-L6-v2 cosine of the text left once constraints are taken out: on the labelled pairs of
# tests/graph/test_graph_dedupe_pairs.py, duplicates under equal constraints score 0.895-1.0 and near misses
# under equal constraints at most 0.864 ("vegan" vs "vegetarian recipes").
REUSE_THRESHOLD = 0.9


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a generation request asks for, as dedupe compares it."""

    kind: str  # the output kind wanted: text, audio, video, subtitle, image
    text: str  # the free text: topic, brief or rendered prompt
    language: str = "en"
    template: str = ""  # template version, e.g. "product_description@3"
    entity: str | None = None  # the product or topic id
    fields: Mapping[str, Any] = field(default_factory=dict)  # the fields the template uses, with their values

    def constraints(self) -> frozenset[str]:
        return read(self.text).constraints | field_constraints(self.fields)

    def key(self) -> str:
        """One digest of every hard constraint: requests may share an output only under the same key."""
        parts = [self.kind, self.language.casefold(), self.template, self.entity or "",
                 sorted(self.constraints())]
        digest = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()
        return digest[:32]

    def embedded_text(self) -> str:
        """The text without what the constraints already compared: "28 cm" and "280 mm" read alike."""
        return read(self.text).rest


@dataclass(frozen=True, slots=True)
class Match:
    """A prior output that can serve the request."""

    output: str
    request: str
    score: float
    kind: str
    cost_usd: float  # what the prior output cost, saved by reusing it
    location: str | None
    decision: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What ``find_duplicate`` decided and why; every decision is stored with its score."""

    id: str
    key: str
    reused: bool
    score: float | None
    threshold: float
    reason: str
    match: Match | None = None


class RequestIndex:
    """Prior requests by constraint key, with the embedding of their text."""

    def __init__(self) -> None:
        self._by_key: dict[str, dict[str, Vector]] = {}
        self._key_of: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._key_of)

    def add(self, request_id: str, key: str, vector: Vector) -> None:
        old = self._key_of.get(request_id)
        if old is not None and old != key:
            self._by_key[old].pop(request_id, None)
        self._by_key.setdefault(key, {})[request_id] = vector
        self._key_of[request_id] = key

    def count(self, key: str) -> int:
        return len(self._by_key.get(key, ()))

    def ranked(self, key: str, vector: Vector) -> list[tuple[str, float]]:
        """Requests under ``key``, most similar first."""
        found = self._by_key.get(key)
        if not found:
            return []
        ids = list(found)
        scores = np.stack([found[i] for i in ids]) @ vector
        order = np.argsort(-scores, kind="stable")
        return [(ids[i], float(scores[i])) for i in order.tolist()]
