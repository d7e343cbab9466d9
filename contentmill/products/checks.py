"""Quality checks on one description: length, key attributes, no contradicted fact, language, no leftover
template text. Each returns a pass or the reason it failed; a failed description is asked again one tier up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from contentmill.products.config import Checks

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_LEFTOVER = re.compile(r"\{[^{}\n]{0,40}\}|\[(?:TODO|TBD|INSERT|PLACEHOLDER)[^\]]*\]|lorem ipsum|<[A-Z_]{3,}>",
                       re.IGNORECASE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_LETTER = re.compile(r"[^\W\d_]")
_WORD = re.compile(r"[^\W_]+")
_ENGLISH = frozenset("the and a an for with of to in is your this it on from by".split())
_CJK_LANGUAGES = ("zh", "ja", "ko")
ENGLISH_MIN_WORDS = 8  # shorter texts may lack every common word and still be English
_STOP = frozenset("the and for with set pack kit new from of by a an in on to".split())


def _number(raw: str) -> str:
    """"1,299.50" -> "1299.5", "100" -> "100", "3.0" -> "3": the same quantity spelled one way."""
    plain = raw.replace(",", "")
    return plain.rstrip("0").rstrip(".") if "." in plain else plain


def _numbers(text: str) -> set[str]:
    return {_number(n) for n in _NUMBER.findall(text)}


def _words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


def count_words(text: str) -> int:
    """Words, where each CJK character counts as one."""
    return len(_CJK.findall(text)) + len(_WORD.findall(_CJK.sub(" ", text)))


def check_length(text: str, checks: Checks) -> str | None:
    words = count_words(text)
    if words < checks.min_words:
        return f"{words} words, fewer than {checks.min_words}"
    if words > checks.max_words:
        return f"{words} words, more than {checks.max_words}"
    return None


def check_key_attributes(text: str, fields: Mapping[str, str]) -> str | None:
    said = set(_words(text))
    name_words = [w for w in _words(fields.get("name", "")) if len(w) > 2 and w not in _STOP]
    if name_words and not said.intersection(name_words):
        return "does not mention the product's name"
    brand = _words(fields.get("brand", ""))
    if brand and not said.intersection(brand):
        return f"does not mention the brand {fields['brand']!r}"
    return None


def check_facts(text: str, fields: Mapping[str, str]) -> str | None:
    """Every number stated must be one the product data gives (prices, sizes, counts, ages)."""
    given = _numbers(" ".join(fields.values()))
    invented = sorted(_numbers(text) - given)
    return f"states numbers the product data does not give: {', '.join(invented[:5])}" if invented else None


def check_language(text: str, language: str) -> str | None:
    letters = _LETTER.findall(text)
    if not letters:
        return "no words"
    cjk_share = len(_CJK.findall(text)) / len(letters)
    if language in _CJK_LANGUAGES:
        return None if cjk_share >= 0.3 else f"not written in {language}"
    if cjk_share > 0.3:
        return f"not written in {language}"
    words = _words(text)
    if language == "en" and len(words) >= ENGLISH_MIN_WORDS and not _ENGLISH.intersection(words):
        return "not written in en"
    return None


def check_leftovers(text: str) -> str | None:
    match = _LEFTOVER.search(text)
    return f"leftover template text {match.group()!r}" if match else None


def run_checks(text: str, fields: Mapping[str, str], language: str, checks: Checks) -> dict[str, str | None]:
    """Each enabled check's outcome: None when it passed, else why it failed."""
    results: dict[str, str | None] = {"length": check_length(text, checks)}
    if checks.key_attributes:
        results["key_attributes"] = check_key_attributes(text, fields)
    if checks.facts:
        results["facts"] = check_facts(text, fields)
    if checks.language:
        results["language"] = check_language(text, language)
    if checks.template_leftovers:
        results["template_leftovers"] = check_leftovers(text)
    return results


def failed(results: Mapping[str, str | None]) -> list[str]:
    return [name for name, reason in results.items() if reason is not None]
