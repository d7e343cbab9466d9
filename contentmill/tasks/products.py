"""The product-descriptions job as a Prefect task: one task run per job of products, never one per product.

The task's input is the job itself (products, config, run id: plain picklable data; in this process passed
``quote``d, so Prefect does not walk every product), and it opens what it needs where it runs. With the flow's
default task runner a job is awaited in the flow's process, as a task of the flow; with any other
(prefect-dask's ``DaskTaskRunner``) it is submitted to that runner, and its result comes back through the
task's state.
With the Batch API, one task submits a tier's packed requests as one batch and waits for it. Prefect's own
retries stay off: a rate-limited job comes back to the flow, which slows down and sends it again, and a
failed item is retried inside the job.
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
from contentmill.products.describing import describe_job
from contentmill.products.offline import describe_offline
from contentmill.products.scheduling import Dispatch
from contentmill.products.work import Job, JobResult

_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False, "retries": 0}


@task(name="describe-products", task_run_name="describe-{size}-{tier}", **_OPTIONS)
async def describe_job_task(job: Job, tier: str, size: int) -> JobResult:
    """Describe one job: a packed request, checks item by item, lone retries, a tier up where checks fail."""
    return await describe_job(job)


@task(name="describe-batch-api", task_run_name="batch-api-{size}-{tier}", **_OPTIONS)
async def describe_offline_task(job: Job, tier: str, size: int) -> JobResult:
    """Describe one tier's products through one Batch API batch, then check and retry online what failed."""
    return await describe_offline(job)


JobTask = Task[[Job, str, int], Coroutine[Any, Any, JobResult]]
REQUESTS_PER_TASK = 4  # on a cluster: a task's own cost (its run in the worker, a gateway opened) spread over 4


@dataclass(frozen=True)
class Dispatchers:
    online: Dispatch
    offline: Dispatch
    per_task: int  # online requests one task carries


def dispatchers(runner: TaskRunner[Any] | None) -> Dispatchers:
    """How a flow run whose task runner is ``runner`` sends its jobs."""
    if runner is None or isinstance(runner, ThreadPoolTaskRunner):
        return Dispatchers(_inline(describe_job_task), _inline(describe_offline_task), 1)
    return Dispatchers(_submitted(describe_job_task), _submitted(describe_offline_task), REQUESTS_PER_TASK)


def _quoted(job: Job) -> Job:
    return cast(Job, quote(job))


def _inline(task: JobTask) -> Dispatch:
    async def dispatch(job: Job) -> JobResult:
        return await task(_quoted(job), job.tier, job.size)

    return dispatch


def _submitted(task: JobTask) -> Dispatch:
    async def dispatch(job: Job) -> JobResult:
        try:  # not quoted: a quoted parameter reaches a Dask worker as a bare tuple
            future = cast(PrefectFuture[JobResult], task.submit(job, job.tier, job.size))
        except OSError as error:  # the cluster cannot be reached: nothing to send again
            raise ConfigError(f"cannot send jobs to the task runner's cluster: {error}") from None
        return await _outcome(future)

    return dispatch


async def _outcome(future: PrefectFuture[JobResult]) -> JobResult:
    """The task's result, awaited without holding a thread while it runs elsewhere."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not finished.done():
            finished.set_result(None)

    def wake(_future: PrefectFuture[JobResult]) -> None:
        loop.call_soon_threadsafe(settle)

    future.add_done_callback(wake)
    await finished
    return await asyncio.to_thread(future.result)
