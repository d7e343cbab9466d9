"""The scorer a user's options ask for: MiniLM similarity to a reference, required facts, an LLM judge (their
mean when several), or by default whether each answer finished (not cut off at its output limit)."""

from __future__ import annotations

from collections.abc import Sequence

from contentmill.gateway import Gateway
from contentmill.quality.base import Rubric, Scorer
from contentmill.quality.rubric import FactsScorer, FinishedScorer


def pick_scorer(gateway: Gateway, *, reference: str | None = None, judge: str | None = None,
                facts: Sequence[str] = ()) -> Scorer:
    scorers: list[Scorer] = []
    if reference:
        from contentmill.quality.similarity import SimilarityScorer  # loads torch: only when asked for

        scorers.append(SimilarityScorer(reference=reference))
    if facts:
        scorers.append(FactsScorer(facts))
    if judge:
        from contentmill.quality.judge import JudgeScorer

        scorers.append(JudgeScorer(gateway, judge))
    if not scorers:
        return FinishedScorer()
    return scorers[0] if len(scorers) == 1 else Rubric(scorers)
