"""The product-descriptions batch as a Prefect task: one task run per batch of products, never one per product.

The task's input is the batch itself (products, config, run id: plain picklable data; in this process passed
``quote``d, so Prefect does not walk every product), and it opens what it needs where it runs. With the flow's
default task runner a batch is awaited in the flow's process, as a task of the flow; with any other
(prefect-dask's ``DaskTaskRunner``) it is submitted to that runner, and its result comes back through the
task's state.
With the Batch API, one task submits a tier's packed requests as one batch and waits for it. Prefect's own
retries stay off: a rate-limited batch comes back to the flow, which slows down and sends it again, and a
failed item is retried inside the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, cast

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from contentmill.errors import ConfigError
from contentmill.products.describing import describe_batch
from contentmill.products.offline import describe_offline
from contentmill.products.scheduling import Dispatch
from contentmill.products.work import Batch, BatchResult

_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False, "retries": 0}


@task(name="describe-batch", task_run_name="describe-{size}-{tier}", **_OPTIONS)
async def describe_batch_task(batch: Batch, tier: str, size: int) -> BatchResult:
    """Describe one batch: a packed request, checks item by item, lone retries, a tier up where checks fail."""
    return await describe_batch(batch)


@task(name="describe-batch-api", task_run_name="batch-api-{size}-{tier}", **_OPTIONS)
async def describe_offline_task(batch: Batch, tier: str, size: int) -> BatchResult:
    """Describe one tier's products through one Batch API batch, then check and retry online what failed."""
    return await describe_offline(batch)


BatchTask = Task[[Batch, str, int], Coroutine[Any, Any, BatchResult]]
REQUESTS_PER_TASK = 4  # on a cluster: a task's own cost (its run in the worker, a gateway opened) spread over 4


@dataclass(frozen=True)
class Dispatchers:
    online: Dispatch
    offline: Dispatch
    per_task: int  # online requests one task carries


def dispatchers(runner: TaskRunner[Any] | None) -> Dispatchers:
    """How a flow run whose task runner is ``runner`` sends its batches."""
    if runner is None or isinstance(runner, ThreadPoolTaskRunner):
        return Dispatchers(_inline(describe_batch_task), _inline(describe_offline_task), 1)
    return Dispatchers(_submitted(describe_batch_task), _submitted(describe_offline_task), REQUESTS_PER_TASK)


def _quoted(batch: Batch) -> Batch:
    return cast(Batch, quote(batch))


def _inline(task: BatchTask) -> Dispatch:
    async def dispatch(batch: Batch) -> BatchResult:
        return await task(_quoted(batch), batch.tier, batch.size)

    return dispatch


def _submitted(task: BatchTask) -> Dispatch:
    async def dispatch(batch: Batch) -> BatchResult:
        try:  # not quoted: a quoted parameter reaches a Dask worker as a bare tuple
            future = cast(PrefectFuture[BatchResult], task.submit(batch, batch.tier, batch.size))
        except OSError as error:  # the cluster cannot be reached: nothing to send again
            raise ConfigError(f"cannot send batches to the task runner's cluster: {error}") from None
        return await _outcome(future)

    return dispatch


async def _outcome(future: PrefectFuture[BatchResult]) -> BatchResult:
    """The task's result, awaited without holding a thread while it runs elsewhere."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not finished.done():
            finished.set_result(None)

    def wake(_future: PrefectFuture[BatchResult]) -> None:
        loop.call_soon_threadsafe(settle)

    future.add_done_callback(wake)
    await finished
    return await asyncio.to_thread(future.result)
