"""Quality scorers on examples: rubric checks, MiniLM similarity, the LLM judge through the gateway, storage."""

from __future__ import annotations

from pathlib import Path

import pytest

from contentmill.errors import QualityError
from contentmill.gateway import Gateway
from contentmill.ledger.store import LedgerStore, settings_url
from contentmill.providers.fake import FakeTextModel
from contentmill.quality import (
    FactsScorer,
    FinishedScorer,
    LanguageScorer,
    LengthScorer,
    QualityRecord,
    Rubric,
    Sample,
    detect_language,
    scores_by_tag,
    write_scores,
)
from contentmill.quality.judge import JudgeScorer, parse_judge_score
from contentmill.settings import load_settings

REFERENCE = "This stainless steel bottle keeps drinks cold for 24 hours and hot for 12."
SIMILAR = "A steel water bottle that keeps your drinks cold for a whole day and warm for half a day."
UNRELATED = "Volcanoes erupt when magma rises through cracks in the Earth's crust."


@pytest.mark.parametrize(("text", "language"), [
    ("The lamp is made of walnut and it gives a warm light for your desk.", "en"),
    ("Die Lampe ist aus Nussbaum und sie gibt ein warmes Licht für den Schreibtisch.", "de"),
    ("La lampe est en noyer et elle donne une lumière chaude pour le bureau.", "fr"),
    ("La lámpara es de nogal y da una luz cálida para el escritorio.", "es"),
    ("这盏台灯由胡桃木制成，光线温暖。", "zh"),
    ("このランプはクルミ材で作られています。", "ja"),
    ("Лампа сделана из ореха и даёт тёплый свет.", "ru"),
    ("12345 !!!", None),
])
def test_language_detection(text: str, language: str | None) -> None:
    assert detect_language(text) == language


async def test_rubric_checks() -> None:
    text = "This walnut lamp gives a warm light. It costs 49 USD."
    assert (await LengthScorer(5, 20).score(Sample(text))).score == 1.0
    assert (await LengthScorer(20, 40).score(Sample(text))).score == pytest.approx((11 - 10) / 10)
    assert (await LengthScorer(0, 10).score(Sample(text))).score == pytest.approx(0.9)
    assert (await LengthScorer(0, 5).score(Sample(text))).score == 0.0
    facts = await FactsScorer(["walnut", "49 usd", "dimmable"]).score(Sample(text))
    assert facts.score == pytest.approx(2 / 3) and facts.detail["missing"] == ["dimmable"]
    assert (await FactsScorer().score(Sample(text, facts=("warm light",)))).score == 1.0
    assert (await LanguageScorer("en").score(Sample(text))).score == 1.0
    assert (await LanguageScorer("zh").score(Sample(text))).score == 0.0
    assert (await FinishedScorer().score(Sample(text, finish_reason="length"))).score == 0.0
    combined = await Rubric([LanguageScorer("en"), FactsScorer(["walnut", "oak"])]).score(Sample(text))
    assert combined.score == pytest.approx(0.75) and combined.detail == {"language": 1.0, "facts": 0.5}


async def test_similarity_orders_a_paraphrase_above_an_unrelated_text() -> None:
    from contentmill.quality.similarity import SimilarityScorer

    scorer = SimilarityScorer(reference=REFERENCE)
    similar = (await scorer.score(Sample(SIMILAR))).score
    unrelated = (await scorer.score(Sample(UNRELATED))).score
    same = (await scorer.score(Sample(REFERENCE))).score
    assert same == pytest.approx(1.0, abs=1e-4)
    assert similar > 0.6 > 0.2 > unrelated
    with pytest.raises(QualityError, match="needs a reference"):
        await SimilarityScorer(scorer.embedder).score(Sample(SIMILAR))


def test_judge_replies_are_read_or_refused() -> None:
    assert parse_judge_score('{"score": 7, "reason": "fine"}') == 0.7
    assert parse_judge_score('Here: {"score": "10"}') == 1.0
    for bad in ('{"answer": "good"}', '{"score": 11}', "eight", '{"score": true}'):
        with pytest.raises(QualityError, match="no score from 0 to 10"):
            parse_judge_score(bad)


async def test_the_judge_is_a_gateway_call_recorded_in_the_ledger(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, monitor_interval_s=0)
    judge_model = FakeTextModel("fake:text", ['{"score": 8, "reason": "complete"}', "I liked it"])
    async with Gateway(settings, models={"fake:text": judge_model}) as gateway:
        judge = JudgeScorer(gateway, "fake:text", tags={"team": "qa"})
        graded = await judge.score(Sample(SIMILAR, task="Describe the bottle", reference=REFERENCE))
        assert graded.score == 0.8 and graded.scorer == "judge"
        with pytest.raises(QualityError):
            await judge.score(Sample(UNRELATED, task="Describe the bottle"))
    prompt = judge_model.calls[0].messages[1].content
    assert "Answer to grade: " + SIMILAR in prompt and "Reference answer: " + REFERENCE in prompt
    with LedgerStore(settings_url(settings)) as store:
        rows = store.calls()
    assert len(rows) == 2 and all(r.tags == {"purpose": "quality-judge", "team": "qa"} for r in rows)
    assert all(r.outcome == "ok" and r.usage is not None and r.usage.input_tokens > 0 for r in rows)


def test_scores_are_stored_with_their_tags(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    with LedgerStore(settings_url(settings)) as store:
        records = [QualityRecord("openai:gpt-4o-mini", "facts", s, template_version="t@1",
                                 tags={"experiment": "e1", "arm": arm})
                   for s, arm in ((0.5, "a"), (1.0, "a"), (0.25, "b"))]
        records.append(QualityRecord("openai:gpt-4o-mini", "facts", 0.0, tags={"experiment": "other", "arm": "a"}))
        assert write_scores(store, records) == 4
        assert scores_by_tag(store, "experiment", "e1", "arm") == {"a": [0.5, 1.0], "b": [0.25]}
