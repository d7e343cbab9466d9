"""Welch's t-test for the difference of two arms' means, with its confidence interval.

Welch's test does not assume equal variances (two prompt templates rarely vary alike). The t distribution's
tail and quantiles come from SciPy's ``scipy.special.stdtr``/``stdtrit`` (SciPy is installed with
sentence-transformers; ``scipy.special`` loads in a fraction of the time ``scipy.stats`` takes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy.special import stdtr, stdtrit

MIN_SAMPLES = 2


@dataclass(frozen=True, slots=True)
class Welch:
    """``diff`` = mean(a) - mean(b); ``ci_low``/``ci_high`` bound it at ``confidence``; ``p`` is two-sided."""

    mean_a: float
    mean_b: float
    diff: float
    t: float
    df: float
    p: float
    ci_low: float
    ci_high: float
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in asdict(self).items()}


def _mean_var(values: Sequence[float]) -> tuple[float, float]:
    mean = math.fsum(values) / len(values)
    return mean, math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)


def welch(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Welch | None:
    """The test of mean(a) == mean(b); None when either side has fewer than two samples."""
    if len(a) < MIN_SAMPLES or len(b) < MIN_SAMPLES:
        return None
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence is a share between 0 and 1 (got {confidence})")
    mean_a, var_a = _mean_var(a)
    mean_b, var_b = _mean_var(b)
    se_a, se_b = var_a / len(a), var_b / len(b)
    se = math.sqrt(se_a + se_b)
    diff = mean_a - mean_b
    if se == 0.0:  # both sides constant: the difference is exact
        return Welch(mean_a, mean_b, diff, math.inf if diff else 0.0, math.inf, 0.0 if diff else 1.0, diff, diff,
                     confidence)
    df = (se_a + se_b) ** 2 / (
        (se_a**2 / (len(a) - 1) if se_a else 0.0) + (se_b**2 / (len(b) - 1) if se_b else 0.0))
    t = diff / se
    p = float(2.0 * stdtr(df, -abs(t)))
    margin = float(stdtrit(df, (1.0 + confidence) / 2.0)) * se
    return Welch(mean_a, mean_b, diff, t, df, p, diff - margin, diff + margin, confidence)
