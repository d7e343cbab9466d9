"""A dry run: the tokens and cost a catalog would take per tier, counted locally, without calling any model.

Input tokens are counted exactly (the prompts are built as the run builds them and packed the same way, by
context window and ``max_items``); output tokens are expected at the middle of each tier's asked length. The
rate-limit headroom is not known before a run, so packing here is the most it can be.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from contentmill.catalog import Catalog as ModelCatalog
from contentmill.metering import Usage
from contentmill.products.catalog import ProductCatalog
from contentmill.products.config import TIERS, ProductsConfig, Tier
from contentmill.products.packing import PackLimit, context_tokens, requests_needed
from contentmill.products.prompts import ITEM_OUTPUT_OVERHEAD, Item, item_tokens, output_budget, overhead_tokens
from contentmill.products.tiers import assign

EXPECTED_TOKENS_PER_WORD = 1.3


def expected_output(words: tuple[int, int]) -> int:
    return math.ceil((words[0] + words[1]) / 2 * EXPECTED_TOKENS_PER_WORD) + ITEM_OUTPUT_OVERHEAD // 2


def estimate(catalog: ProductCatalog, config: ProductsConfig, models: ModelCatalog) -> dict[str, Any]:
    by_tier: dict[Tier, list[Item]] = defaultdict(list)
    for product in catalog.products:
        by_tier[assign(product, config)].append(Item(product.id, product.fields(config.packing)))
    tiers: dict[str, dict[str, Any]] = {}
    for tier in TIERS:
        items = by_tier.get(tier, [])
        if not items:
            continue
        spec = config.models(tier)
        info = models.get(spec.model)
        per_item_out = output_budget(spec.words, 1)
        inputs = [item_tokens(item, info.tokenizer) for item in items]
        overhead = overhead_tokens(config.language, spec.words, info.tokenizer)
        limit = PackLimit(context_tokens(info, config.packing), config.packing.max_items)
        requests = requests_needed([n + per_item_out for n in inputs], limit, overhead)
        usage = Usage(input_tokens=sum(inputs) + requests * overhead,
                      output_tokens=len(items) * expected_output(spec.words))
        most = Usage(input_tokens=usage.input_tokens, output_tokens=len(items) * per_item_out)
        tiers[tier] = {"items": len(items), "model": spec.model, "requests": requests,
                       "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                       "tokens": usage.total_tokens, "cost_usd": round(info.cost(usage), 8),
                       "max_cost_usd": round(info.cost(most), 8)}
    return {
        "items": len(catalog.products), "row_errors": len(catalog.errors),
        "requests": sum(t["requests"] for t in tiers.values()),
        "tokens": sum(t["tokens"] for t in tiers.values()),
        "cost_usd": round(sum(t["cost_usd"] for t in tiers.values()), 8),
        "max_cost_usd": round(sum(t["max_cost_usd"] for t in tiers.values()), 8),
        "by_tier": tiers,
    }
