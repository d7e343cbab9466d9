"""Run requests through an experiment: each request goes to its arm (by its hash), is rendered with that arm's
template version and sent through the gateway tagged ``experiment``/``arm``; optionally each output is graded
and the grade stored in ``quality_scores`` with the same tags.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from contentmill.experiments.split import assign, request_hash
from contentmill.experiments.store import Experiment
from contentmill.gateway import Gateway
from contentmill.ledger.store import LedgerStore
from contentmill.prompts.library import TemplateLibrary
from contentmill.quality.base import Sample, Scorer
from contentmill.quality.records import QualityRecord, write_scores

DEFAULT_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class TrialRequest:
    """One request of an experiment: the template's variables, and what a scorer may compare with."""

    variables: Mapping[str, Any]
    reference: str | None = None
    facts: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRequest:
        """``{"variables": {...}, "reference": "...", "facts": [...]}``, or a flat mapping of variables."""
        if "variables" in data:
            return cls(dict(data["variables"]), data.get("reference"), tuple(data.get("facts") or ()))
        return cls(dict(data))


@dataclass(frozen=True, slots=True)
class Trial:
    arm: str
    request: str  # the request's hash
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    quality: float | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


async def run_trials(
    gateway: Gateway,
    library: TemplateLibrary,
    experiment: Experiment,
    requests: Sequence[TrialRequest],
    *,
    model: str | None = None,
    scorer: Scorer | None = None,
    tags: Mapping[str, str] | None = None,
    cache: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    store: LedgerStore | None = None,
) -> list[Trial]:
    """Send every request through its arm; cache hits are off by default (they cost 0 and say nothing of an arm).

    Quality grades (when ``scorer`` is given) are written to ``store`` (default: the gateway's ledger). The calls
    are flushed to the ledger before this returns, so a status read next sees them all.
    """
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(request: TrialRequest) -> tuple[Trial, QualityRecord | None]:
        digest = request_hash(request.variables)
        arm = experiment.arm(assign(experiment.name, digest, experiment.split))
        template = library.get(arm.template, arm.version)
        rendered = template.render(request.variables)
        call_tags = {**(tags or {}), "experiment": experiment.name, "arm": arm.name}
        async with gate:
            gen = await gateway.generate(rendered, model=arm.model or model, tags=call_tags, cache=cache,
                                         template_version=template.spec)
        grade = None
        if scorer is not None:
            sample = Sample(gen.text or "", rendered.input_text(), request.reference, gen.finish_reason,
                            request.facts)
            score = await scorer.score(sample)
            grade = QualityRecord(gen.model, scorer.name, score.score, template_version=template.spec,
                                  tags=call_tags)
        trial = Trial(arm.name, digest, gen.model, gen.usage.input_tokens, gen.usage.output_tokens, gen.cost_usd,
                      grade.score if grade else None, call_tags)
        return trial, grade

    done = await asyncio.gather(*(one(r) for r in requests))
    grades = [g for _, g in done if g is not None]
    if grades:
        await asyncio.to_thread(write_scores, store or gateway.store, grades)
    await asyncio.to_thread(gateway.ledger.flush)
    return [t for t, _ in done]
