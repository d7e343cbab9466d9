"""Scheduling a run's jobs: as many requests at once as ``Aimd`` allows, sent through ``dispatch`` (a Prefect
task in this process, one request a task; or on a Dask cluster, up to ``per_task`` requests a task, so a task's
own cost is spread over several), the run paused for a rate limit's Retry-After; each result is recorded
(graph, journal) while the next jobs go out.

A job that never comes back (its worker process died, its task crashed) is sent again; the gateway's cache
answers whatever it had already paid for. A ``ContentmillError`` (a cluster that cannot be reached) ends the run
at once. A product whose jobs are lost ``MAX_LOST`` times ends the run
with the error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from contentmill.errors import ContentmillError
from contentmill.products.aimd import Aimd
from contentmill.products.config import ProductsConfig
from contentmill.products.output import Row
from contentmill.products.planning import Packer, variant_row
from contentmill.products.recording import Recorder
from contentmill.products.work import Job, JobResult, Work

log = logging.getLogger("contentmill.products")
DEFAULT_RETRY_AFTER_S = 1.0
MAX_LOST = 3

Dispatch = Callable[[Job], Awaitable[JobResult]]
Progress = Callable[[int], Awaitable[None]]  # products with a row so far (resumed ones too)


@dataclass
class RunStats:
    calls: int = 0
    jobs: int = 0
    rate_limited: int = 0
    lost: int = 0  # jobs sent again because they never came back
    upstream_s: float = 0.0


class Scheduler:
    def __init__(self, run_id: str, config: ProductsConfig, tags: dict[str, str], packer: Packer,
                 followers: dict[str, list[Work]], recorder: Recorder, aimd: Aimd, per_task: int = 1) -> None:
        self.run_id, self.config, self.tags, self.per_task = run_id, config, tags, per_task
        self.packer, self.followers, self.recorder, self.aimd = packer, followers, recorder, aimd
        self.stats = RunStats()
        self._in_flight: dict[asyncio.Future[JobResult], Job] = {}
        self._recording: set[asyncio.Task[None]] = set()  # rows being written while the next jobs go out
        self._record_lock = asyncio.Lock()

    def job(self, groups: list[list[Work]]) -> Job:
        self.stats.jobs += 1
        return Job(self.run_id, self.stats.jobs, tuple(tuple(g) for g in groups), self.config, self.tags)

    async def run(self, dispatch: Dispatch, progress: Progress | None = None, *,
                  offline: Dispatch | None = None) -> RunStats:
        """Send every job, the Batch API ones first when ``offline`` is given; ``progress`` after each."""
        if offline is not None:
            for groups in self.packer.groups():
                self._send(offline, self.job(groups))
            await self._drain(progress)
        paused_until = 0.0
        while self.packer.pending() or self._in_flight:
            while time.monotonic() >= paused_until and (groups := await self._next_groups()):
                self._send(dispatch, self.job(groups))
            if not self._in_flight:
                await asyncio.sleep(max(0.0, paused_until - time.monotonic()))
                continue
            retry_after = await self._next_result()
            if retry_after is not None:
                paused_until = time.monotonic() + retry_after
            await self._progress(progress)
        await asyncio.gather(*self._recording)
        return self.stats

    async def _next_groups(self) -> list[list[Work]]:
        """Up to ``per_task`` requests for the next task, within the requests AIMD lets run at once."""
        busy = sum(len(job.groups) for job in self._in_flight.values())
        groups: list[list[Work]] = []
        while len(groups) < self.per_task and busy + len(groups) < self.aimd.slots:
            works = await self.packer.next_request(self.aimd.slots)
            if works is None:
                break
            groups.append(works)
        return groups

    def _send(self, dispatch: Dispatch, job: Job) -> None:
        self._in_flight[asyncio.ensure_future(dispatch(job))] = job

    async def _drain(self, progress: Progress | None) -> None:
        while self._in_flight:
            await self._next_result()
            await self._progress(progress)

    async def _progress(self, progress: Progress | None) -> None:
        if progress is not None:
            await progress(len(self.recorder.journal))

    async def _next_result(self) -> float | None:
        """Absorb the jobs that finish next; the pause a rate limit asks for, if one did."""
        done, _ = await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
        pause = None
        for future in done:
            job = self._in_flight.pop(future)
            try:
                result = future.result()
            except ContentmillError:
                raise
            except Exception as error:  # the task never returned: its worker died, or it crashed
                self._lost(job, error)
                continue
            await self._absorb(job, result)
            if result.rate_limited:
                pause = result.retry_after or DEFAULT_RETRY_AFTER_S
        return pause

    def _lost(self, job: Job, error: Exception) -> None:
        works = job.works
        for work in works:
            work.lost += 1
        if any(work.lost >= MAX_LOST for work in works):
            raise error
        self.stats.lost += 1
        log.warning("job %d (%d products) did not come back (%s: %s); sending it again",
                    job.number, len(works), type(error).__name__, error)
        self.packer.requeue(works)

    async def _absorb(self, job: Job, result: JobResult) -> None:
        stats = self.stats
        stats.calls += result.calls
        stats.upstream_s += result.upstream_s
        stats.rate_limited += result.rate_limited
        self.aimd.observe(rate_limited=result.rate_limited or result.congested, latency_s=result.latency_s)
        self.packer.requeue(result.requeue)
        works = {work.id: work for work in job.works}
        variants: list[Row] = []
        for row in result.rows:
            for follower in self.followers.pop(row.id, []):
                variants.append(variant_row(follower, row))
                works[follower.id] = follower
        recording = asyncio.ensure_future(self._record([*result.rows, *variants], works))
        self._recording.add(recording)
        recording.add_done_callback(self._recording.discard)

    async def _record(self, rows: list[Row], works: dict[str, Work]) -> None:
        """One job's rows into the graph and the journal, one job at a time, off the event loop."""
        async with self._record_lock:
            await asyncio.to_thread(self.recorder.record, rows, works)
