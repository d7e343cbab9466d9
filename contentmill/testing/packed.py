"""Packed requests at the fake upstream: a prompt that carries a JSON array of items with ids gets a JSON array
of answers, one per item, in the same order.

A product-description prompt lists its items as ``[{"id": ..., "name": ..., ...}, ...]`` on lines of their
own; the fake answers ``[{"id": ..., "description": ...}]`` where each description is made only of the item's
own values (name, brand, price, the first sentences of its longer fields), so it mentions the attributes it
was given and contradicts none. Output tokens therefore grow with the number of items, as a real model's do.
An item whose id is in ``corrupt`` is answered with leftover template text when it shares the request with
other items, and correctly when it is asked alone: the shape of a model that slips on one item of a batch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any

_ARRAY_START = re.compile(r"^\[", re.MULTILINE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD_LIMIT = re.compile(r"at most (\d+) words", re.IGNORECASE)
CORRUPT_TEXT = "{description} for {product_name}"
SENTENCE_WORDS = 28  # the longest sentence an answer copies from a field, in words and characters
SENTENCE_CHARS = 180


def packed_items(text: str) -> list[dict[str, Any]] | None:
    """The items of a packed prompt: the first JSON array of objects that all have an ``id``; None otherwise."""
    decoder = json.JSONDecoder()
    for match in _ARRAY_START.finditer(text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) and "id" in v for v in value):
            return value
    return None


def _first_sentence(value: str) -> str:
    sentence = _SENTENCE.split(re.sub(r"\s*\|\s*", ". ", value).strip(), maxsplit=1)[0]
    words = sentence[:SENTENCE_CHARS].split()
    return " ".join(words[:SENTENCE_WORDS]).rstrip(".,;:") + "."


def describe(item: Mapping[str, Any]) -> str:
    """A description built from the item's own values only."""
    name = str(item.get("name") or item["id"])
    brand = item.get("brand")
    parts = [f"{name}{f' by {brand}' if brand else ''}."]
    category = item.get("category")
    if category:
        parts.append(f"A pick in {str(category).split('|')[-1].strip()}.")
    for key, value in item.items():
        if key in {"id", "name", "brand", "category", "price"} or not isinstance(value, str) or not value.strip():
            continue
        parts.append(_first_sentence(value))
    price = item.get("price")
    if price not in (None, ""):
        parts.append(f"Yours for {price}.")
    return " ".join(parts)


def word_limit(text: str) -> int | None:
    """The length a prompt asks for ("at most N words"), which the fake follows as a model would."""
    match = _WORD_LIMIT.search(text)
    return int(match.group(1)) if match else None


def packed_reply(items: list[dict[str, Any]], corrupt: Collection[str] = (), max_words: int | None = None) -> str:
    """The JSON array answering ``items``; ids in ``corrupt`` get template text when asked with others."""
    answers = []
    for item in items:
        slipped = len(items) > 1 and str(item["id"]) in corrupt
        text = CORRUPT_TEXT if slipped else describe(item)
        if max_words is not None:
            text = " ".join(text.split()[:max_words])
        answers.append({"id": item["id"], "description": text})
    return json.dumps(answers, ensure_ascii=False)
