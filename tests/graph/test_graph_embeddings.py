"""Embeddings: normalized float32 rows from all-MiniLM-L6-v2, the same as sentence-transformers' own."""

from __future__ import annotations

import numpy as np

from contentmill.knowledge_graph import SentenceEmbedder


def test_rows_are_normalized_float32_like_sentence_transformers(embedder: SentenceEmbedder) -> None:
    texts = ["A red steel bottle.", "保温杯", "Octopuses have three hearts.", ""]
    rows = embedder.encode(texts)
    assert rows.shape == (4, 384) and rows.dtype == np.float32 and rows.flags.c_contiguous
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    reference = embedder.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert np.allclose(rows, reference, atol=1e-5)
    assert embedder.name == "sentence-transformers/all-MiniLM-L6-v2" and embedder.dimensions == 384


def test_repeated_texts_are_encoded_once(embedder: SentenceEmbedder) -> None:
    rows = embedder.encode(["same", "other", "same"])
    assert np.array_equal(rows[0], rows[2]) and not np.array_equal(rows[0], rows[1])
    assert embedder.encode([]).shape == (0, 384)


def test_meaning_is_closer_than_wording(embedder: SentenceEmbedder) -> None:
    bees, paraphrase, wasps = embedder.encode(
        ["A short video about honey bees", "A brief video explaining honey bees", "A short video about wasps"]
    )
    assert float(bees @ paraphrase) > 0.9 > float(bees @ wasps)
