"""What the knowledge graph needs of an embedding model, and the one it uses by default: the bundled
all-MiniLM-L6-v2 (``contentmill.providers.sentence``, shared with the gateway's free embedding model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from contentmill.knowledge_graph.records import Vector
from contentmill.providers.sentence import (
    DIMENSIONS,
    MODEL_NAME,
    SentenceEmbedder,
    bundled_model_path,
    load_sentence_transformer,
)

__all__ = ["DIMENSIONS", "MODEL_NAME", "SentenceEmbedder", "TextEmbedder", "bundled_model_path",
           "load_sentence_transformer"]


class TextEmbedder(Protocol):
    """What the graph needs of an embedding model."""

    @property
    def name(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> Vector:
        """One normalized float32 row per text."""
        ...
