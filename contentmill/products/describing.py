"""Describing one job: a packed request, each item's answer checked, the failures asked again alone, and a
product that fails alone asked one tier up; what comes back is the job's rows (``JobResult``).

A job needs nothing of the run but its ``Job``: ``describe_job`` opens a gateway from the settings of
the process it runs in (a Dask worker's own, which reach the same Redis limits and budgets in the services
profile) unless the caller shares its open one (``sharing``: the flow's process, where jobs run inline).
Recording the rows (graph, journal) is the scheduler's part, in the flow's process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar

from contentmill.errors import ContentmillError, ProviderRateLimited, RateLimited
from contentmill.gateway import Gateway, Generation
from contentmill.products.checks import failed, run_checks
from contentmill.products.config import ProductsConfig
from contentmill.products.output import Row
from contentmill.products.prompts import TEMPLATE_VERSION, build_request, parse_answer
from contentmill.products.tiers import next_tier
from contentmill.products.work import Job, JobResult, Work, split_usage
from contentmill.settings import load_settings

Answers = dict[str, tuple[str | None, str | None]]  # product id -> (its text, the model that wrote it)
_SHARED: ContextVar[Gateway | None] = ContextVar("contentmill_products_gateway", default=None)


class Deferred(Exception):
    """A call met a rate limit: the job (or the product) goes back to the scheduler's queue."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after


@contextmanager
def sharing(gateway: Gateway) -> Iterator[None]:
    """Batches run within this block, in this process, use ``gateway`` rather than opening their own."""
    token = _SHARED.set(gateway)
    try:
        yield
    finally:
        _SHARED.reset(token)


@asynccontextmanager
async def job_gateway() -> AsyncIterator[Gateway]:
    shared = _SHARED.get()
    if shared is not None:
        yield shared
        return
    # The flow's own gateway runs the periodic rules and the orphan sweep; a job's only calls.
    async with Gateway(load_settings(monitor_interval_s=0)) as gateway:
        yield gateway


async def describe_job(job: Job) -> JobResult:
    """The body of one online job task: its requests side by side, one result."""
    async with job_gateway() as gateway:
        describer = Describer(gateway, job.config, job.tags)
        result = JobResult()
        for part in await asyncio.gather(*(describer.describe(list(group)) for group in job.groups)):
            result.add(part)
        return result


class Describer:
    def __init__(self, gateway: Gateway, config: ProductsConfig, tags: dict[str, str]) -> None:
        self.gateway, self.config, self.tags = gateway, config, tags

    async def describe(self, works: list[Work]) -> JobResult:
        """One packed call for ``works`` (one tier and language), its answers judged."""
        started = time.perf_counter()
        result = JobResult()
        try:
            answers: Answers | None = await self.ask(works, result, packed=len(works) > 1)
        except Deferred as deferred:
            result.rate_limited, result.retry_after, result.requeue = True, deferred.retry_after, works
            answers = None
        except ContentmillError as error:
            if len(works) == 1:
                result.rows.append(works[0].row(model=None, description=None, error=str(error)))
                answers = None
            else:  # the packed request failed as a whole: each product gets its own chance
                answers = {w.id: (None, None) for w in works}
        if answers is not None:
            await self.judge(works, answers, result)
        result.latency_s = time.perf_counter() - started
        return result

    async def judge(self, works: Sequence[Work], answers: Answers, result: JobResult) -> None:
        """Check each answer of one request; the failures are asked again alone (online), a tier up if they
        failed alone already."""
        alone: list[Work] = []
        for work in works:
            text, model = answers[work.id]
            if self._accept(work, text, model, result):
                continue
            if len(works) > 1:
                alone.append(work)
            elif not self._escalate(work, text, model, result):
                alone.append(work)
        for outcome in await asyncio.gather(*(self._alone(w, result) for w in alone)):
            if outcome is not None:
                result.rows.append(outcome)

    async def ask(self, works: Sequence[Work], result: JobResult, *, packed: bool,
                  retry: str | None = None) -> Answers:
        """One call for ``works`` (all of one tier and language); each item's text and the model that wrote it."""
        tier = works[0].tier
        models = self.config.models(tier)
        request = build_request([w.item() for w in works], works[0].language, models.words)
        tags = {**self.tags, "tier": tier, **({"retry": "quality", "failed_check": retry} if retry else {})}
        try:
            gen = await self.gateway.generate(request, model=models.model, fallbacks=models.fallbacks, tags=tags,
                                              template_version=TEMPLATE_VERSION)
        except (RateLimited, ProviderRateLimited) as error:
            raise Deferred(error.retry_after) from None
        return self.answers(works, gen, result, "packed" if packed else "alone")

    def answers(self, works: Sequence[Work], gen: Generation, result: JobResult, mode: str) -> Answers:
        """Charge a call to its products and read each one's text from its answer."""
        result.calls += 1
        if not gen.cached:
            result.upstream_s += gen.latency_s
        result.congested |= gen.attempts > 1
        for work, usage in zip(works, split_usage(gen.usage, len(works)), strict=True):
            work.usage = work.usage + usage
            work.cost_usd += gen.cost_usd / len(works)
            work.cached &= gen.cached
        texts = parse_answer(gen.text or "", [w.id for w in works])
        for work in works:
            work.attempts.append(f"{work.tier}:{mode}")
        return {w.id: (texts[w.id], gen.model) for w in works}

    def _accept(self, work: Work, text: str | None, model: str | None, result: JobResult) -> bool:
        """Check one answer; a passing one becomes a row."""
        if text is None:
            work.checks = {"answer": "missing or malformed in the answer"}
        else:
            checks = run_checks(text, work.fields, work.language, self.config.checks)
            work.checks = {name: reason or "ok" for name, reason in checks.items()}
            if not failed(checks):
                result.rows.append(work.row(model=model, description=text))
                return True
        if work.attempts:
            work.attempts[-1] += ":" + ",".join(n for n, r in work.checks.items() if r != "ok")
        return False

    def _escalate(self, work: Work, text: str | None, model: str | None, result: JobResult) -> bool:
        """Move a product that failed alone one tier up; at the top, it becomes an error row. True if it ended."""
        higher = next_tier(work.tier)
        if higher is None or higher not in self.config.tiers:
            failures = ", ".join(f"{n}: {r}" for n, r in work.checks.items() if r != "ok")
            result.rows.append(work.row(model=model, description=text, error=f"failed its checks ({failures})"))
            return True
        work.tier = higher
        return False

    async def _alone(self, work: Work, result: JobResult) -> Row | None:
        """Ask for one product on its own until it passes, runs out of tiers, or meets a rate limit."""
        retry = next((name for name, outcome in work.checks.items() if outcome != "ok"), None)
        while True:
            try:
                texts = await self.ask([work], result, packed=False, retry=retry)
            except Deferred as deferred:
                result.rate_limited, result.retry_after = True, deferred.retry_after
                result.requeue.append(work)
                return None
            except ContentmillError as error:
                return work.row(model=None, description=None, error=str(error))
            text, model = texts[work.id]
            if self._accept(work, text, model, result) or self._escalate(work, text, model, result):
                return result.rows.pop()
            retry = next((n for n, r in work.checks.items() if r != "ok"), "answer")
