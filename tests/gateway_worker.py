"""A worker process for the gateway's multi-process tests: N concurrent callers through one Gateway.

Usage: python tests/gateway_worker.py CALLS CONCURRENCY MAX_TOKENS [hang]
Settings come from the environment (CONTENTMILL_*, OPENAI_*). Prints one JSON line: ok, refused, errors.
With ``hang`` it makes one call and waits (the test kills it mid-call).
"""

from __future__ import annotations

import asyncio
import json
import sys

from contentmill.errors import BudgetExceeded, ContentmillError, RateLimited
from contentmill.gateway import Gateway
from contentmill.requests import TextRequest
from contentmill.settings import load_settings


async def main(calls: int, concurrency: int, max_tokens: int) -> dict[str, object]:
    counts = {"ok": 0, "budget_refused": 0, "rate_refused": 0, "errors": 0, "cost_usd": 0.0}
    queue = iter(range(calls))
    async with Gateway(load_settings()) as gateway:

        async def caller() -> None:
            for i in queue:
                request = TextRequest.chat(f"Write a tagline for product {i} of batch {sys.argv[1]}.",
                                           max_tokens=max_tokens)
                try:
                    gen = await gateway.generate(request, model="openai:gpt-4o-mini", tags={"team": "shop"},
                                                 cache=False)
                except BudgetExceeded:
                    counts["budget_refused"] += 1
                except RateLimited:
                    counts["rate_refused"] += 1
                except ContentmillError as error:
                    counts["errors"] += 1
                    print(f"error: {error}", file=sys.stderr)
                else:
                    counts["ok"] += 1
                    counts["cost_usd"] += gen.cost_usd  # type: ignore[operator]

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    return counts


async def hang() -> None:
    async with Gateway(load_settings()) as gateway:
        print("calling", flush=True)
        await gateway.generate(TextRequest.chat("A slow answer, please.", max_tokens=50), model="openai:gpt-4o-mini",
                               tags={"team": "shop"}, cache=False)


if __name__ == "__main__":
    if len(sys.argv) > 4 and sys.argv[4] == "hang":
        asyncio.run(hang())
    else:
        print(json.dumps(asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))), flush=True)
