"""Quality-cost joint choice: the cheapest model (or model and template version) whose measured quality meets a
floor with confidence, and what that saves against always using the best one.

"Meets the floor with confidence" means the lower bound of a one-sided Student-t confidence interval on the mean
quality score is at or above the floor::

    lower = mean - t(confidence, n - 1) * sd / sqrt(n)        (n >= 2 scores; fewer never qualify)

"The best" is the arm with the highest lower bound (one score alone is no evidence); costs are blended USD per
useful output (``routing.stats``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scipy.stats import t as student_t

from contentmill.errors import ConfigError, RoutingError
from contentmill.routing.stats import Blended, QualityStats

Arm = tuple[str, str | None]  # (model, template version or None)


@dataclass(frozen=True, slots=True)
class ArmQuality:
    model: str
    template_version: str | None
    n: int
    mean: float
    lower: float | None  # None: too few scores for an interval
    cost_per_output_usd: float
    meets_floor: bool

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "template_version": self.template_version, "n": self.n,
                "mean": round(self.mean, 6), "lower": None if self.lower is None else round(self.lower, 6),
                "cost_per_output_usd": self.cost_per_output_usd, "meets_floor": self.meets_floor}


@dataclass(frozen=True, slots=True)
class FloorChoice:
    """The chosen arm, the best-quality arm, and the saving per output (USD and share) of choosing the former."""

    chosen: ArmQuality
    best: ArmQuality
    floor: float
    confidence: float
    arms: tuple[ArmQuality, ...]

    @property
    def saving_usd_per_output(self) -> float:
        return self.best.cost_per_output_usd - self.chosen.cost_per_output_usd

    @property
    def saving_share(self) -> float:
        best = self.best.cost_per_output_usd
        return self.saving_usd_per_output / best if best > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen.as_dict(), "best": self.best.as_dict(), "floor": self.floor,
                "confidence": self.confidence, "saving_usd_per_output": self.saving_usd_per_output,
                "saving_share": round(self.saving_share, 6), "arms": [a.as_dict() for a in self.arms]}


def lower_bound(q: QualityStats, confidence: float) -> float | None:
    """The one-sided lower confidence bound on the mean score, or None with fewer than two scores."""
    if q.n < 2:
        return None
    return q.mean - float(student_t.ppf(confidence, q.n - 1)) * q.sd / math.sqrt(q.n)


def cheapest_meeting_floor(
    quality: Mapping[Arm, QualityStats],
    stats: Mapping[str, Blended],
    floor: float,
    *,
    confidence: float = 0.95,
    models: Sequence[str] | None = None,
) -> FloorChoice:
    """Among arms with quality scores (restricted to ``models`` when given), the cheapest whose lower bound meets
    ``floor``; raises RoutingError naming each arm's bound when none does."""
    if not 0.5 <= confidence < 1:
        raise ConfigError(f"confidence is a probability in [0.5, 1) (got {confidence})")
    arms: list[ArmQuality] = []
    for (model, version), q in quality.items():
        if model not in stats or (models is not None and model not in models):
            continue
        low = lower_bound(q, confidence)
        arms.append(ArmQuality(model, version, q.n, q.mean, low, stats[model].cost_per_output_usd,
                               low is not None and low >= floor))
    if not arms:
        raise RoutingError("no model has quality scores yet; score some outputs first (quality_scores)")
    arms.sort(key=lambda a: (a.cost_per_output_usd, -a.mean))
    best = max(arms, key=lambda a: (a.lower is not None, a.lower or a.mean, -a.cost_per_output_usd))
    adequate = [a for a in arms if a.meets_floor]
    if not adequate:
        bounds = ", ".join(f"{a.model}{'@' + a.template_version if a.template_version else ''}: "
                           f"{'n<2' if a.lower is None else f'{a.lower:.3f}'}" for a in arms)
        raise RoutingError(f"no model meets the quality floor {floor} at {confidence:.0%} confidence "
                           f"(lower bounds: {bounds}); lower the floor or collect more scores")
    return FloorChoice(adequate[0], best, floor, confidence, tuple(arms))
