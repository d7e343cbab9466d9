"""What a quality scorer is: something that grades one output from 0 (useless) to 1 (what was wanted).

Scorers are pluggable: anything with a ``name`` and an async ``score`` is one. ``Rubric`` combines several.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Sample:
    """One output to grade, with what it answered and, where known, a reference answer."""

    output: str
    task: str = ""
    reference: str | None = None
    finish_reason: str | None = None
    facts: tuple[str, ...] = ()  # facts this output must state (``FactsScorer`` without its own list)


@dataclass(frozen=True, slots=True)
class Score:
    """A grade in [0, 1] from one scorer, with what it saw (``detail``)."""

    scorer: str
    score: float
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"a score is from 0 to 1 (got {self.score} from {self.scorer})")


@runtime_checkable
class Scorer(Protocol):
    """Grades samples; ``name`` is what the ``quality_scores`` table records (at most 32 characters)."""

    name: str

    async def score(self, sample: Sample) -> Score: ...


class Rubric:
    """The weighted mean of several scorers (equal weights unless given); each part's score is kept in detail."""

    def __init__(self, scorers: Sequence[Scorer], weights: Sequence[float] | None = None, name: str = "rubric"
                 ) -> None:
        if not scorers:
            raise ValueError("a rubric needs at least one scorer")
        self.scorers = list(scorers)
        self.weights = list(weights or [1.0] * len(scorers))
        if len(self.weights) != len(self.scorers) or sum(self.weights) <= 0:
            raise ValueError("give one positive weight per scorer")
        self.name = name

    async def score(self, sample: Sample) -> Score:
        parts = [await scorer.score(sample) for scorer in self.scorers]
        total = sum(w * p.score for w, p in zip(self.weights, parts, strict=True)) / sum(self.weights)
        return Score(self.name, min(1.0, max(0.0, total)), {p.scorer: round(p.score, 4) for p in parts})
