"""Semantic similarity to a reference answer with the local all-MiniLM-L6-v2 model.

The score is the **sentence cosine similarity** of the two texts' mean-pooled, normalized MiniLM embeddings
(the knowledge graph's embedder), clipped at 0: not a BERTScore token alignment. It rewards the same meaning
in other words and is cheap (one batch of two texts, no model call through the gateway).
"""

from __future__ import annotations

import asyncio

import numpy as np

from contentmill.errors import QualityError
from contentmill.knowledge_graph.embeddings import SentenceEmbedder, TextEmbedder
from contentmill.quality.base import Sample, Score


class SimilarityScorer:
    """Cosine similarity of output and reference embeddings, in [0, 1]."""

    name = "similarity"

    def __init__(self, embedder: TextEmbedder | None = None, reference: str | None = None) -> None:
        self.embedder = embedder or SentenceEmbedder()
        self.reference = reference

    def similarity(self, text: str, reference: str) -> float:
        vectors = self.embedder.encode([text, reference])
        return float(np.clip(np.dot(vectors[0], vectors[1]), 0.0, 1.0))

    async def score(self, sample: Sample) -> Score:
        reference = sample.reference if sample.reference is not None else self.reference
        if not reference:
            raise QualityError("the similarity scorer needs a reference answer to compare with")
        value = await asyncio.to_thread(self.similarity, sample.output, reference)
        return Score(self.name, value, {"method": "minilm-sentence-cosine"})
