"""The selection matrix: five weighted dimensions, each scored 0-1 (higher is better), summed into one total.

Per candidate set (a tier's models), from blended statistics (``routing.stats``):

- quality    the blended mean quality score (0-1)
- latency    fastest P99 in the set / this model's P99 (1 for the fastest, 0.5 for twice as slow)
- cost       (cheapest USD per useful output + 1e-6) / (this model's + 1e-6); a free model scores 1
- stability  (1 - error rate) * (1 - share of SLA misses)
- coverage   mean of "serves the task kind" and "serves the language": 1 if the catalog lists it, 0 if the
             model lists others, 0.5 if it lists none (no claim either way)

total = sum(weight_d * score_d) with the weights normalized to sum 1; each ``weight_d * score_d`` is kept as the
dimension's contribution, so a decision can be explained term by term.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from contentmill.routing.config import DIMENSIONS, Weights
from contentmill.routing.stats import Blended

COST_EPSILON_USD = 1e-6  # keeps free models finite in the cost ratio
MEMO_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Candidate:
    """One model's row in a decision: raw statistics, per-dimension scores and contributions, the total."""

    model: str
    raw: Mapping[str, float]
    samples: Mapping[str, int]
    scores: Mapping[str, float]
    contributions: Mapping[str, float]
    total: float
    excluded: str | None = None

    def excluding(self, reason: str) -> Candidate:
        return replace(self, excluded=reason)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready; shares the (never mutated) mappings, since every routed call records its candidates."""
        return {"model": self.model, "raw": self.raw, "samples": self.samples, "scores": self.scores,
                "contributions": self.contributions, "total": self.total, "excluded": self.excluded}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        return cls(data["model"], data["raw"], data["samples"], data["scores"], data["contributions"],
                   data["total"], data.get("excluded"))


def _serves(listed: tuple[str, ...], wanted: str | None) -> float:
    if wanted is None or not listed:
        return 0.5 if wanted is not None else 1.0
    return 1.0 if wanted in listed else 0.0


def coverage(stat: Blended, task_kind: str | None, language: str | None) -> float:
    return (_serves(stat.task_kinds, task_kind) + _serves(stat.languages, language)) / 2


def rank(stats: Sequence[Blended], weights: Weights, task_kind: str | None = None, language: str | None = None
         ) -> list[Candidate]:
    """The candidates best first (ties keep the given order)."""
    if not stats:
        return []
    fastest = min(s.latency_p99_s for s in stats)
    cheapest = min(s.cost_per_output_usd for s in stats)
    w = weights.values()
    out: list[Candidate] = []
    for s in stats:
        scores = (
            min(max(s.quality, 0.0), 1.0),
            fastest / s.latency_p99_s if s.latency_p99_s > 0 else 1.0,
            (cheapest + COST_EPSILON_USD) / (s.cost_per_output_usd + COST_EPSILON_USD),
            (1.0 - s.error_rate) * (1.0 - s.sla_miss_rate),
            coverage(s, task_kind, language),
        )
        contributions = tuple(wd * sd for wd, sd in zip(w, scores, strict=True))
        out.append(Candidate(
            model=s.model,
            raw={"quality": s.quality, "latency_p99_s": s.latency_p99_s, "cost_per_output_usd": s.cost_per_output_usd,
                 "error_rate": s.error_rate, "sla_miss_rate": s.sla_miss_rate, "coverage": scores[4]},
            samples={"calls": s.calls, "quality_scores": s.quality_samples},
            scores=dict(zip(DIMENSIONS, scores, strict=True)),
            contributions=dict(zip(DIMENSIONS, contributions, strict=True)),
            total=sum(contributions),
        ))
    out.sort(key=lambda c: -c.total)
    return out


class SelectionMatrix:
    """Ranks candidate sets from one snapshot of blended statistics; rankings are memoized per
    (models, task kind, language, weights) until the snapshot is replaced, so a warm decision is a dict lookup."""

    def __init__(self, stats: Mapping[str, Blended], skipped: Mapping[str, str] | None = None) -> None:
        self.stats = dict(stats)
        self.skipped = dict(skipped or {})
        self._memo: dict[tuple[tuple[str, ...], str | None, str | None, Weights], tuple[Candidate, ...]] = {}

    def rank(self, models: Sequence[str], weights: Weights, task_kind: str | None = None,
             language: str | None = None) -> tuple[Candidate, ...]:
        """Ranked candidates; models the snapshot lacks (unknown, unpriced, not text) come last, excluded."""
        key = (tuple(models), task_kind, language, weights)
        found = self._memo.get(key)
        if found is not None:
            return found
        known = [self.stats[m] for m in models if m in self.stats]
        ranked = rank(known, weights, task_kind, language)
        missing = [_excluded(m, self.skipped.get(m, "not in the model catalog")) for m in models
                   if m not in self.stats]
        if len(self._memo) >= MEMO_LIMIT:  # per-call weights could grow it without end
            self._memo.clear()
        result = self._memo[key] = (*ranked, *missing)
        return result


def _excluded(model: str, reason: str) -> Candidate:
    zeros = dict.fromkeys(DIMENSIONS, 0.0)
    return Candidate(model, {}, {}, zeros, zeros, 0.0, excluded=reason)
