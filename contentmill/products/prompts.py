"""The product-description prompt: shared instructions and one worked example, then the products as a JSON
array; the answer is a JSON array of ``{"id", "description"}`` read item by item.

Packing many products into one request pays for the instructions and the example once instead of once per
product. The template version is part of every cache key and graph record: a changed prompt is a new version
and regenerates.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contentmill.metering import count_tokens
from contentmill.requests import TextRequest

TEMPLATE_VERSION = "product_description@1"
LANGUAGES = {"en": "English", "zh": "Chinese", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian"}
TOKENS_PER_WORD = 1.6  # English in o200k is about 1.3 tokens a word; the rest is margin for the JSON around it
ITEM_OUTPUT_OVERHEAD = 40  # the id and JSON punctuation of one answer
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")

_EXAMPLE_IN = [
    {"id": "ex-1", "name": "Stainless Steel Water Bottle 750 ml", "brand": "Hydra", "category": "Sports & Outdoors",
     "price": "$19.99", "about": "Double-walled steel keeps drinks cold for 24 hours. | Leak-proof lid."},
    {"id": "ex-2", "name": "Organic Cotton Crew T-Shirt", "brand": "Fernway", "category": "Clothing",
     "price": "$24.00", "about": "100% organic cotton jersey. | Relaxed fit. | Machine washable at 30 degrees."},
    {"id": "ex-3", "name": "Wooden Stacking Rainbow, 7 Pieces", "category": "Toys & Games | Baby & Toddler Toys",
     "price": "$32.50", "about": "Solid beech wood with water-based paint. | For ages 12 months and up."},
]
_EXAMPLE_OUT = [
    {"id": "ex-1", "description": "The Hydra Stainless Steel Water Bottle holds 750 ml, and its double-walled "
     "steel keeps drinks cold for 24 hours. A leak-proof lid means it can ride in any bag. Yours for $19.99."},
    {"id": "ex-2", "description": "Fernway's Organic Cotton Crew T-Shirt is cut from 100% organic cotton jersey "
     "in a relaxed fit that stays comfortable all day, and it goes in the machine at 30 degrees. $24.00."},
    {"id": "ex-3", "description": "Seven pieces of solid beech wood, finished in water-based paint, stack into a "
     "rainbow or become bridges, tunnels and cradles. Made for little hands from 12 months and up. $32.50."},
]
STYLE = (
    "Style: lead with what the product is and who it is for; then its most useful facts (size, material, "
    "capacity, age range, what is in the box) in plain words; end with the price when one is given. No "
    "superlatives the facts do not support, no questions, no emoji, no markdown, no headings. Keep units and "
    "numbers exactly as given. Write each description as one paragraph."
)


@dataclass(frozen=True, slots=True)
class Item:
    """One product as a prompt carries it."""

    id: str
    fields: Mapping[str, str]

    def payload(self) -> dict[str, str]:
        return {"id": self.id, **self.fields}


def system_prompt(language: str, words: tuple[int, int]) -> str:
    name = LANGUAGES.get(language, language)
    low, high = words
    return (
        "You write product descriptions for an online shop. For each product in the JSON array you are given, "
        f"write one description in {name} of at least {low} and at most {high} words. Use only the facts given: "
        "never invent numbers, sizes, materials or claims. Mention the product's name and its brand when one is "
        'given. Answer with only a JSON array of objects {"id": ..., "description": ...}, one per product, '
        "in the order given, and nothing else.\n"
        f"{STYLE}\n"
        f"Example input:\n{json.dumps(_EXAMPLE_IN)}\nExample answer:\n{json.dumps(_EXAMPLE_OUT)}"
    )


def user_prompt(items: Sequence[Item]) -> str:
    return "Products:\n" + json.dumps([item.payload() for item in items], ensure_ascii=False)


def output_budget(words: tuple[int, int], items: int) -> int:
    """max_tokens for an answer of ``items`` descriptions of at most ``words[1]`` words."""
    return items * (math.ceil(words[1] * TOKENS_PER_WORD) + ITEM_OUTPUT_OVERHEAD)


def build_request(items: Sequence[Item], language: str, words: tuple[int, int]) -> TextRequest:
    return TextRequest.chat(user_prompt(items), system=system_prompt(language, words),
                            max_tokens=output_budget(words, len(items)))


def item_tokens(item: Item, encoding: str = "o200k_base") -> int:
    """Tokens one product adds to a packed prompt."""
    return count_tokens(json.dumps(item.payload(), ensure_ascii=False), encoding) + 1


def overhead_tokens(language: str, words: tuple[int, int], encoding: str = "o200k_base") -> int:
    """Tokens every request pays whatever it packs: instructions, example, message framing."""
    return count_tokens(system_prompt(language, words), encoding) + count_tokens("Products:\n[]", encoding) + 10


def parse_answer(text: str, ids: Sequence[str]) -> dict[str, str | None]:
    """Each id's description from a JSON-array answer; None for an id missing or malformed in it."""
    found: dict[str, str | None] = dict.fromkeys(ids)
    try:
        data: Any = json.loads(_FENCE.sub("", text.strip()))
    except ValueError:
        return found
    if isinstance(data, dict):  # some models wrap the array: {"items": [...]} or {"descriptions": [...]}
        data = next((v for v in data.values() if isinstance(v, list)), [])
    if not isinstance(data, list):
        return found
    for entry in data:
        if isinstance(entry, dict) and str(entry.get("id")) in found and isinstance(entry.get("description"), str):
            found[str(entry["id"])] = entry["description"].strip()
    return found
