"""A small flow for the scale-out test: many text generations through the gateway, as any flow makes them.

Two runs of it on two workers ask overlapping prompts at once, so they share the cache (each prompt is paid once),
the vendor's rate limit and the budgets, all through Redis.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import flow, get_run_logger

from contentmill.gateway import Gateway
from contentmill.providers.base import TextRequest
from contentmill.settings import load_settings


@flow(name="scaleout-probe", persist_result=False)
async def scaleout_probe(first: int, last: int, model: str = "openai:gpt-4o-mini", team: str = "shop",
                         run: str = "a") -> dict[str, Any]:
    """Describe items ``first`` to ``last`` (inclusive), all at once."""
    async with Gateway(load_settings()) as gateway:
        generations = await asyncio.gather(*(
            gateway.generate(TextRequest.chat(f"Describe item {i} of the catalog in one line.", max_tokens=40),
                             model=model, tags={"team": team, "run": run})
            for i in range(first, last + 1)))
    paid = [g for g in generations if not g.cached]
    summary = {"items": len(generations), "paid": len(paid), "cached": len(generations) - len(paid),
               "cost_usd": sum(g.cost_usd for g in paid)}
    get_run_logger().info("scaleout probe %s: %s", run, summary)
    return summary
