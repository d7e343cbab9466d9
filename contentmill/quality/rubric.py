"""Rubric checks that need no model: length bounds, required facts present, and the output's language.

The language detector is deliberately simple: the script decides Chinese, Japanese, Korean, Cyrillic, Arabic
and others; among Latin-script languages (en, de, fr, es, it, pt, nl) the one whose common stopwords occur most
wins. It is enough to catch an answer in the wrong language, not to identify dialects or very short texts.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

from contentmill.quality.base import Sample, Score

_STOPWORDS = {
    "en": "the and of to a in is that it for with as on are this be you by or from at not have your".split(),
    "de": "der die und das ist nicht ein eine zu mit den von sich auf für dem auch es ich sie wir".split(),
    "fr": "le la les et des est une un pour que dans qui pas sur avec du au ce il elle nous vous".split(),
    "es": "el la los las y de que en un una es por con para del se no su al lo como más".split(),
    "it": "il la di che e un una per non sono con del della gli le si è anche questo".split(),
    "pt": "o a os as de que e do da em um uma para com não no na se por mais".split(),
    "nl": "de het een en van is dat in op te niet met voor zijn er ook aan maar".split(),
}
_WORDS = re.compile(r"[^\W\d_]+")
_TOKENS = re.compile(r"[^\W_]+")  # words and numbers


def _script(ch: str) -> str | None:
    if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf":
        return "han"
    if "\u3040" <= ch <= "\u30ff":
        return "kana"
    if "\uac00" <= ch <= "\ud7af" or "\u1100" <= ch <= "\u11ff":
        return "hangul"
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    for script in ("CYRILLIC", "ARABIC", "GREEK", "HEBREW", "DEVANAGARI", "THAI", "LATIN"):
        if name.startswith(script):
            return script.lower()
    return "other"


_SCRIPT_LANGUAGE = {"cyrillic": "ru", "arabic": "ar", "greek": "el", "hebrew": "he", "devanagari": "hi",
                    "thai": "th", "hangul": "ko"}


def detect_language(text: str) -> str | None:
    """An ISO 639-1 code for ``text`` (script first, then Latin stopwords), or None when it cannot tell."""
    scripts = Counter(s for s in map(_script, text) if s is not None)
    if not scripts:
        return None
    if scripts["kana"]:
        return "ja"
    top, _ = scripts.most_common(1)[0]
    if top == "han":
        return "zh"
    if top != "latin":
        return _SCRIPT_LANGUAGE.get(top)
    words = [w.lower() for w in _WORDS.findall(text)]
    hits = {lang: sum(1 for w in words if w in set(stops)) for lang, stops in _STOPWORDS.items()}
    best = max(hits, key=lambda lang: hits[lang])
    return best if hits[best] > 0 else None


def _units(text: str) -> int:
    """Words, with each Chinese/Japanese character counted as one (those scripts have no spaces)."""
    cjk = sum(1 for ch in text if _script(ch) in ("han", "kana"))
    return cjk + len(_TOKENS.findall(re.sub(r"[\u3040-\u30ff\u3400-\u9fff]", " ", text)))


class LengthScorer:
    """1 inside [min_words, max_words]; outside, falls linearly to 0 at half the minimum / twice the maximum."""

    name = "length"

    def __init__(self, min_words: int = 0, max_words: int | None = None) -> None:
        if min_words < 0 or (max_words is not None and max_words < max(min_words, 1)):
            raise ValueError("length bounds need 0 <= min_words <= max_words")
        self.min_words, self.max_words = min_words, max_words

    async def score(self, sample: Sample) -> Score:
        n = _units(sample.output)
        if n < self.min_words:
            value = max(0.0, (n - self.min_words / 2) / (self.min_words / 2))
        elif self.max_words is not None and n > self.max_words:
            value = max(0.0, 1.0 - (n - self.max_words) / self.max_words)
        else:
            value = 1.0
        return Score(self.name, value, {"words": n, "min": self.min_words, "max": self.max_words})


class FactsScorer:
    """The share of required facts (strings, matched case- and space-insensitively) the output states; without
    a list of its own it checks each sample's ``facts``."""

    name = "facts"

    def __init__(self, facts: Sequence[str] = ()) -> None:
        self.facts = [f for f in facts if f.strip()]

    async def score(self, sample: Sample) -> Score:
        facts = self.facts or [f for f in sample.facts if f.strip()]
        if not facts:
            return Score(self.name, 1.0, {"missing": []})
        text = " ".join(sample.output.lower().split())
        missing = [f for f in facts if " ".join(f.lower().split()) not in text]
        return Score(self.name, 1.0 - len(missing) / len(facts), {"missing": missing})


class LanguageScorer:
    """1 when the detected language is the expected one, else 0."""

    name = "language"

    def __init__(self, expected: str) -> None:
        self.expected = expected.lower().split("-")[0]

    async def score(self, sample: Sample) -> Score:
        found = detect_language(sample.output)
        return Score(self.name, 1.0 if found == self.expected else 0.0, {"detected": found, "expected": self.expected})


class FinishedScorer:
    """1 when the answer is non-empty and ended by itself, 0 when empty or cut off at the output limit."""

    name = "finished"

    async def score(self, sample: Sample) -> Score:
        done = bool(sample.output.strip()) and sample.finish_reason != "length"
        return Score(self.name, 1.0 if done else 0.0, {"finish_reason": sample.finish_reason})
