"""What a product-descriptions run is configured with: catalog columns, tier rules and models, packing, checks.

Every part has a default that reads the shipped sample catalog (``amazon-products-1k.csv``) as it is and
assigns about 5% premium, 80% standard and 15% light. A YAML or JSON file (``--config`` or the flow's
``config`` parameter) overrides any part; unknown keys are refused so a typo never passes silently.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contentmill.errors import ConfigError

Tier = Literal["light", "standard", "premium"]
TIERS: tuple[Tier, ...] = ("light", "standard", "premium")  # cheapest first: a failed check moves one up


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Columns(_Strict):
    """Which catalog column holds each product field; None where the catalog has no such column."""

    id: str | None = "Uniq Id"
    name: str = "Product Name"
    brand: str | None = "Brand Name"
    category: str | None = "Category"
    price: str | None = "Selling Price"
    about: str | None = "About Product"
    specs: str | None = "Product Specification"
    sku: str | None = "Sku"
    flag: str | None = None  # a column whose truthy value (yes, true, 1, y, x) marks a product for a tier rule
    language: str | None = None  # per-product language; the run's language otherwise


class TierRule(_Strict):
    """Products matching every condition given go to ``tier``; rules are tried in order, the first wins."""

    tier: Tier
    categories: tuple[str, ...] = ()  # category prefixes, case-insensitive ("Toys & Games | Puzzles")
    min_price: float | None = None
    max_price: float | None = None
    flagged: bool | None = None  # the flag column is truthy (True) or not (False)
    skus: tuple[str, ...] = ()  # product ids or SKUs


class TierModels(_Strict):
    """The model of a tier, the models to fall back to, and how long its descriptions are."""

    model: str
    fallbacks: tuple[str, ...] = ()
    words: tuple[int, int] = (40, 90)  # asked length in words; the length check allows some slack


class Checks(_Strict):
    """Quality checks on each description; each can be switched off."""

    min_words: int = Field(default=12, ge=1)
    max_words: int = Field(default=220, ge=1)
    key_attributes: bool = True  # mentions the product's name (a distinctive word of it) and brand
    facts: bool = True  # every number it states is one the product data gives
    language: bool = True  # written in the product's language
    template_leftovers: bool = True  # no {placeholder}, [TODO], lorem ipsum


class Packing(_Strict):
    """How products are packed into requests and how many requests run at once."""

    max_items: int = Field(default=16, ge=1)  # 1 turns packing off: one request per product
    context_share: float = Field(default=0.5, gt=0, le=1)  # share of the model's context window a request may fill
    start_concurrency: int = Field(default=4, ge=1)
    max_concurrency: int = Field(default=32, ge=1)
    about_chars: int = Field(default=600, ge=0)  # how much of the long fields a prompt carries
    specs_chars: int = Field(default=300, ge=0)


DEFAULT_RULES = (
    TierRule(tier="premium", flagged=True),
    TierRule(tier="premium", min_price=95.0),
    TierRule(tier="light", max_price=7.99),
)
DEFAULT_MODELS: dict[Tier, TierModels] = {
    "premium": TierModels(model="openai:gpt-4o", fallbacks=("openai:gpt-4.1-mini",), words=(70, 140)),
    "standard": TierModels(model="openai:gpt-4o-mini", fallbacks=("openai:gpt-4.1-mini",), words=(40, 90)),
    "light": TierModels(model="openai:gpt-4o-mini", fallbacks=("openai:gpt-4.1-mini",), words=(20, 45)),
}


class ProductsConfig(_Strict):
    columns: Columns = Columns()
    rules: tuple[TierRule, ...] = DEFAULT_RULES
    default_tier: Tier = "standard"
    tiers: dict[Tier, TierModels] = Field(default_factory=lambda: dict(DEFAULT_MODELS))
    checks: Checks = Checks()
    packing: Packing = Packing()
    language: str = "en"
    team: str = "shop"  # the cost tag of every call
    # Each tier's model and fallbacks picked by the router at the start of a run, from its tier of the same name
    # (CONTENTMILL_ROUTING_FILE), ranked by the selection matrix on live statistics; the decision is recorded.
    route_tiers: bool = False

    def models(self, tier: Tier) -> TierModels:
        found = self.tiers.get(tier)
        if found is None:
            raise ConfigError(f"tier {tier!r} has no model: add tiers.{tier}.model to the products config")
        return found

    def digest(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


def load_config(path: Path | None = None, overrides: dict[str, object] | None = None) -> ProductsConfig:
    """The defaults, overridden by a YAML/JSON file and then by ``overrides`` (top-level keys)."""
    data: dict[str, object] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read the products config {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"the products config {path} must be a mapping of settings")
        data.update(raw)
    data.update(overrides or {})
    try:
        return ProductsConfig.model_validate(data)
    except ValidationError as exc:
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid products config{where}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
