"""The numpy MiniLM against sentence-transformers on the same bundled model: the same vectors."""

from __future__ import annotations

import numpy as np
import pytest

from contentmill.providers.minilm import NumpyMiniLM
from contentmill.providers.sentence import SentenceEmbedder

TEXTS = [
    "how octopuses breathe",
    "How do octopuses breathe?",
    "手冲咖啡的关键在于水温和研磨度。",
    "Octopuses have three hearts and blue blood; each of their 8 arms can taste what it touches.",
    "word " * 400,  # past the model's 256 tokens: cut there, as sentence-transformers cuts it
]


@pytest.mark.slow
def test_the_numpy_vectors_are_sentence_transformers_vectors() -> None:
    quick = NumpyMiniLM()
    mine, theirs = quick.encode(TEXTS), SentenceEmbedder().encode(TEXTS)
    assert mine.dtype == np.float32 and mine.shape == (len(TEXTS), quick.dimensions)
    assert np.abs(mine - theirs).max() < 1e-5
    assert quick.name == SentenceEmbedder().name
    assert quick.encode([]).shape == (0, quick.dimensions)
    close = float(mine[0] @ mine[1])
    assert close == pytest.approx(float(theirs[0] @ theirs[1]), abs=1e-6) and close > 0.9
