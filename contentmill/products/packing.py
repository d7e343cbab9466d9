"""How many products go into one request: as many as save tokens, bounded by the model's context window, the
rate-limit headroom the gateway has left for the model right now, and the configured maximum.

The headroom is the gateway's own token bucket for the model's TPM (the same one admission charges), shared
between the jobs that may run at once; it is floored at a quarter of the bucket so a drained bucket does
not shrink every request to one product and spend the limit on repeated instructions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from contentmill.catalog import ModelInfo
from contentmill.gateway import Gateway
from contentmill.products.config import Packing

DEFAULT_CONTEXT = 8192
HEADROOM_FLOOR = 0.25


@dataclass(frozen=True, slots=True)
class PackLimit:
    """Tokens one request may carry (input and output together) and how many products at most."""

    tokens: int
    items: int


def context_tokens(info: ModelInfo, packing: Packing) -> int:
    return int((info.context_window or DEFAULT_CONTEXT) * packing.context_share)


async def pack_limit(gateway: Gateway, info: ModelInfo, packing: Packing, concurrency: int) -> PackLimit:
    tokens = context_tokens(info, packing)
    headroom = await gateway.tpm_headroom(info.name)
    if headroom is not None:
        available, size = headroom
        share = max(available, size * HEADROOM_FLOOR) / max(concurrency, 1)
        tokens = min(tokens, int(share), int(size))
    return PackLimit(tokens, packing.max_items)


def take(queue: deque[tuple[int, int]], limit: PackLimit, overhead: int) -> list[int]:
    """Pop the positions of the next products that fit: ``queue`` holds (position, tokens in + out) pairs.
    The first product always goes, even alone over the budget (the gateway refuses it if it cannot fit)."""
    chosen: list[int] = []
    used = overhead
    while queue and len(chosen) < limit.items:
        position, cost = queue[0]
        if chosen and used + cost > limit.tokens:
            break
        queue.popleft()
        chosen.append(position)
        used += cost
    return chosen


def requests_needed(costs: Sequence[int], limit: PackLimit, overhead: int) -> int:
    """How many requests ``costs`` pack into under ``limit`` (for estimates)."""
    queue = deque(enumerate(costs))
    count = 0
    while queue:
        take(queue, limit, overhead)
        count += 1
    return count
