"""The Batch API as Prefect tasks: submit now, collect when the vendor has answered (in this run or a later one).

``submit_batch`` is not retried: a batch created whose answer was lost would be created (and paid) twice.
``collect_batch`` polls with backoff and may be retried: until it has settled a batch, collecting is idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from contentmill.gateway import Gateway
from contentmill.gateway.batch import BatchOutcome, BatchTicket, wait_and_collect
from contentmill.providers.batch import BatchStatus
from contentmill.requests import TextRequest
from contentmill.settings import load_settings
from contentmill.tasks import RETRY_OPTIONS

_COMMON: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
_COLLECT: dict[str, Any] = {**_COMMON, **RETRY_OPTIONS}


@task(name="submit-batch", retries=0, **_COMMON)
async def submit_batch(items: Sequence[tuple[str, TextRequest]], model: str,
                       tags: Mapping[str, str] | None = None,
                       item_tags: Mapping[str, Mapping[str, str]] | None = None,
                       template_version: str | None = None) -> BatchTicket:
    """Submit ``(custom id, request)`` items as one batch of ``model``; the cache answers what it holds."""
    async with Gateway(load_settings()) as gateway:
        ticket = await gateway.submit_batch(items, model=model, tags=tags, item_tags=item_tags,
                                            template_version=template_version)
    get_run_logger().info("batch %s: %d submitted to %s (%.6f USD reserved), %d answered from the cache",
                          ticket.batch_id or "-", len(ticket.submitted), model, ticket.reserved_usd,
                          len(ticket.cached))
    return ticket


@task(name="collect-batch", **_COLLECT)
async def collect_batch(batch_id: str, timeout_s: float = 3600.0, poll_s: float = 1.0,
                        max_poll_s: float = 60.0) -> BatchOutcome | None:
    """Wait (polling with backoff) for the batch to finish and collect it; None if it outlasts ``timeout_s``."""
    logger = get_run_logger()

    def progress(status: BatchStatus) -> None:
        logger.info("batch %s: %s, %d of %d done, %d failed", status.id, status.status, status.completed,
                    status.total, status.failed)

    async with Gateway(load_settings()) as gateway:
        outcome = await wait_and_collect(gateway, batch_id, timeout_s=timeout_s, poll_s=poll_s,
                                         max_poll_s=max_poll_s, on_status=progress)
    if outcome is None:
        logger.warning("batch %s is still running after %.0f s; it stays pending: collect it later", batch_id,
                       timeout_s)
    else:
        logger.info("batch %s %s: %d of %d answered, %.6f USD", batch_id, outcome.status, outcome.ok,
                    len(outcome.results), outcome.cost_usd)
    return outcome
