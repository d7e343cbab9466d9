"""The product-descriptions batch as a Prefect task: one task run per batch of products, never one per product.

The task receives the run's id and the id of a batch the run holds, and runs it on the run's gateway and
graph, which live in the flow's process for the length of the run. With the Batch API, one task submits a tier's packed
requests as one batch and waits for it. Prefect's own retries stay off: a rate-limited batch
comes back to the flow, which slows down and sends it again, and a failed item is retried inside the batch.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from contentmill.products.offline import describe_offline
from contentmill.products.runner import BatchResult, Work, lookup


@task(name="describe-batch", cache_policy=NO_CACHE, persist_result=False, retries=0,
      task_run_name="describe-{size}-{tier}")
async def describe_batch_task(run_id: str, batch_id: str, tier: str, size: int) -> BatchResult:
    """Describe one batch: a packed request, checks item by item, lone retries, a tier up where checks fail."""
    run = lookup(run_id)
    return await run.describe(run.unstage(batch_id))


async def dispatch(run_id: str, batch_id: str, batch: list[Work]) -> BatchResult:
    return await describe_batch_task(run_id, batch_id, batch[0].tier, len(batch))


@task(name="describe-batch-api", cache_policy=NO_CACHE, persist_result=False, retries=0,
      task_run_name="batch-api-{size}-{tier}")
async def describe_offline_task(run_id: str, batch_id: str, tier: str, size: int) -> BatchResult:
    """Describe one tier's products through one Batch API batch, then check and retry online what failed."""
    run = lookup(run_id)
    return await describe_offline(run, run.unstage(batch_id))


async def dispatch_offline(run_id: str, batch_id: str, groups: list[list[Work]]) -> BatchResult:
    return await describe_offline_task(run_id, batch_id, groups[0][0].tier, sum(len(g) for g in groups))
