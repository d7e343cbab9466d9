"""Pluggable quality scoring: rubric checks (length, facts, language, finished), MiniLM sentence similarity to a
reference, and an LLM judge through the gateway; scores go to the ledger's ``quality_scores`` table."""

from contentmill.quality.base import Rubric, Sample, Score, Scorer
from contentmill.quality.records import QualityRecord, scores_by_tag, write_scores
from contentmill.quality.rubric import (
    FactsScorer,
    FinishedScorer,
    LanguageScorer,
    LengthScorer,
    detect_language,
)

__all__ = ["FactsScorer", "FinishedScorer", "LanguageScorer", "LengthScorer", "QualityRecord", "Rubric", "Sample",
           "Score", "Scorer", "detect_language", "scores_by_tag", "write_scores"]
