"""Products through the provider's Batch API (``submit_mode="batch"``): for runs that can wait, priced at the
vendor's batch discount.

Each tier's packed requests go out as one batch (one Prefect task), which is polled until it completes; every
answer is then checked as an online one would be, and the products that fail are asked again online, alone
and a tier up as usual. A batch still running when the wait ends stays pending in the gateway's store: the
next run of the same catalog collects it instead of paying again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from contentmill.errors import ProviderUnavailable
from contentmill.gateway import Generation
from contentmill.gateway import batch as batch_api
from contentmill.products.describing import Answers, Describer, job_gateway
from contentmill.products.prompts import TEMPLATE_VERSION, build_request
from contentmill.products.work import Job, JobResult, Work

DEFAULT_WAIT_S = 24 * 3600.0  # the Batch API's completion window


async def describe_offline(job: Job, wait_s: float = DEFAULT_WAIT_S) -> JobResult:
    """The body of one Batch API task: the batch's packed groups (one tier and language) as one vendor batch."""
    async with job_gateway() as gateway:
        return await _describe(Describer(gateway, job.config, job.tags), job.groups, wait_s)


async def _describe(describer: Describer, groups: Sequence[Sequence[Work]], wait_s: float) -> JobResult:
    started = time.perf_counter()
    result = JobResult()
    tier = groups[0][0].tier
    models = describer.config.models(tier)
    requests = [(f"g{i}", build_request([w.item() for w in group], group[0].language, models.words))
                for i, group in enumerate(groups)]
    gateway = describer.gateway
    ticket = await batch_api.submit(gateway, requests, model=models.model, tags={**describer.tags, "tier": tier},
                                    template_version=TEMPLATE_VERSION)
    found: dict[str, Generation] = dict(ticket.cached)
    by_hash = {digest: custom_id for custom_id, digest in ticket.hashes.items()}
    for batch_id in sorted({b for b in (ticket.batch_id, *ticket.waiting.values()) if b is not None}):
        outcome = await batch_api.wait_and_collect(gateway, batch_id, timeout_s=wait_s)
        if outcome is None:
            raise ProviderUnavailable(f"batch {batch_id} is still running after {wait_s:g} s; run again later "
                                      "to collect it (it stays pending, nothing is paid twice)")
        for item in outcome.results.values():
            custom_id = by_hash.get(item.request_hash, item.custom_id)
            if item.generation is not None and custom_id in dict(requests):
                found[custom_id] = item.generation
    judged = []
    for index, group in enumerate(groups):
        gen = found.get(f"g{index}")
        answers: Answers = (describer.answers(group, gen, result, "batch") if gen is not None
                            else {w.id: (None, None) for w in group})
        judged.append(describer.judge(group, answers, result))
    await asyncio.gather(*judged)
    result.latency_s = time.perf_counter() - started
    return result
