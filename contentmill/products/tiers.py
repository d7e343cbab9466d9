"""Which tier each product belongs to, and the tier to try when a description fails its checks.

Rules come from the products config and are tried in order; the first whose every condition holds decides,
and a product no rule matches gets the default tier. The seed rules put flagged products and those priced
95 or more in premium, those at 7.99 or less in light, the rest in standard: on the sample catalog about
5% / 80% / 15%.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from contentmill.products.catalog import Product
from contentmill.products.config import TIERS, ProductsConfig, Tier, TierRule


def matches(rule: TierRule, product: Product) -> bool:
    if rule.categories:
        category = product.category.casefold()
        if not any(category.startswith(prefix.casefold()) for prefix in rule.categories):
            return False
    if rule.min_price is not None and (product.price is None or product.price < rule.min_price):
        return False
    if rule.max_price is not None and (product.price is None or product.price > rule.max_price):
        return False
    if rule.flagged is not None and product.flagged != rule.flagged:
        return False
    return not rule.skus or product.id in rule.skus or (bool(product.sku) and product.sku in rule.skus)


def assign(product: Product, config: ProductsConfig) -> Tier:
    for rule in config.rules:
        if matches(rule, product):
            return rule.tier
    return config.default_tier


def next_tier(tier: Tier) -> Tier | None:
    """The tier above, for a description that failed its checks; None above premium."""
    index = TIERS.index(tier)
    return TIERS[index + 1] if index + 1 < len(TIERS) else None


def tier_shares(products: Iterable[Product], config: ProductsConfig) -> dict[str, float]:
    counts = Counter(assign(p, config) for p in products)
    total = sum(counts.values()) or 1
    return {tier: counts.get(tier, 0) / total for tier in TIERS}
