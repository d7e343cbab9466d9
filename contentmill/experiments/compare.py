"""The comparison tool: the same prompts on several models through the gateway, side by side.

Every call goes through the gateway with the cache off (a hit would cost 0 and measure nothing) and is tagged
``purpose=compare``, so it is admitted, priced and recorded like any other. Per model: tokens in and out, cost,
latency p50/p99 and a quality score; the token difference is given against the cheapest model (the baseline).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from contentmill.errors import GatewayError, ProviderError, TemplateError, UnpricedModel
from contentmill.gateway import Gateway, Generation
from contentmill.quality.base import Sample, Scorer
from contentmill.quality.records import QualityRecord, write_scores
from contentmill.quality.rubric import FinishedScorer
from contentmill.requests import TextRequest

DEFAULT_MAX_TOKENS = 256
DEFAULT_CONCURRENCY = 4
PROMPT_SEPARATOR = "---"


@dataclass(frozen=True, slots=True)
class ModelStats:
    """One model's totals over every prompt and run; latencies in milliseconds."""

    model: str
    calls: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms_p50: float | None
    latency_ms_p99: float | None
    quality: float | None
    tokens_diff_pct: float | None = None  # total tokens against the baseline model, in percent
    output_tokens_diff_pct: float | None = None
    error_types: Mapping[str, int] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def as_dict(self) -> dict[str, Any]:
        def r(value: float | None, digits: int) -> float | None:
            return None if value is None else round(value, digits)

        return {
            "model": self.model, "calls": self.calls, "errors": self.errors, "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens, "total_tokens": self.total_tokens,
            "cost_usd": round(self.cost_usd, 10), "latency_ms_p50": r(self.latency_ms_p50, 3),
            "latency_ms_p99": r(self.latency_ms_p99, 3), "quality": r(self.quality, 4),
            "tokens_diff_pct": r(self.tokens_diff_pct, 2), "output_tokens_diff_pct": r(self.output_tokens_diff_pct, 2),
            "error_types": dict(self.error_types),
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    models: tuple[ModelStats, ...]
    baseline: str | None
    prompts: int
    runs: int
    scorer: str

    def as_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "prompts": self.prompts, "runs": self.runs, "quality_scorer": self.scorer,
                "models": [m.as_dict() for m in self.models]}

    def table(self) -> list[dict[str, Any]]:
        """Rows for a table artifact or a printed table (calls and errors are in ``as_dict`` and ``failures``)."""
        return [
            {"model": m.model, "tok in": m.input_tokens,
             "tok out": m.output_tokens, "USD": f"{m.cost_usd:.6f}", "p50 ms": _fmt(m.latency_ms_p50),
             "p99 ms": _fmt(m.latency_ms_p99), "quality": _fmt(m.quality, 2), "tokens": _pct(m.tokens_diff_pct)}
            for m in self.models
        ]


    def failures(self) -> list[str]:
        """One line per model with failed calls, e.g. ``x:y: 2 of 10 calls failed (ProviderTimeout x2)``."""
        lines = []
        for m in self.models:
            if m.errors:
                kinds = ", ".join(f"{kind} x{count}" for kind, count in m.error_types.items())
                lines.append(f"{m.model}: {m.errors} of {m.calls} calls failed ({kinds})")
        return lines


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation between ranks, as numpy's default); None when empty."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


def read_prompts(source: str, max_tokens: int = DEFAULT_MAX_TOKENS, system: str | None = None) -> list[TextRequest]:
    """Prompts from ``source``: a path to a .jsonl file (objects with prompt, optional system/max_tokens), a text
    file (prompts separated by lines of ``---``), or else the text of one prompt."""
    path = Path(source)
    try:
        is_file = path.is_file()
    except OSError:  # a long prompt is not a path
        is_file = False
    if not is_file:
        return [TextRequest.chat(source, system=system, max_tokens=max_tokens)]
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        requests = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                requests.append(TextRequest.chat(str(row["prompt"]), system=row.get("system", system),
                                                 max_tokens=int(row.get("max_tokens", max_tokens))))
            except (ValueError, KeyError, TypeError) as exc:
                raise TemplateError(f"{path}:{number}: each line is a JSON object with a 'prompt' ({exc})") from None
        return requests
    parts = [p.strip() for p in _split(text)]
    return [TextRequest.chat(p, system=system, max_tokens=max_tokens) for p in parts if p]


def _split(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.strip() == PROMPT_SEPARATOR:
            parts.append("\n".join(current))
            current = []
        else:
            current.append(line)
    return [*parts, "\n".join(current)]


async def compare_models(
    gateway: Gateway,
    prompts: Sequence[TextRequest],
    models: Sequence[str],
    *,
    runs: int = 1,
    scorer: Scorer | None = None,
    references: Sequence[str | None] | None = None,
    tags: Mapping[str, str] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    record_quality: bool = False,
) -> Comparison:
    """Run every prompt ``runs`` times on every model (cache off) and sum up each model; with ``record_quality``
    each grade is also written to the ledger's ``quality_scores`` (tagged like the calls) for the router."""
    if not prompts or not models or runs < 1:
        raise ValueError("compare needs at least one prompt, one model and one run")
    scorer = scorer or FinishedScorer()
    for model in models:  # an unknown or unpriced model is refused before anything is paid
        missing = gateway.catalog.get(model).missing_price()
        if missing:
            raise UnpricedModel(model, missing)
    gate = asyncio.Semaphore(max(1, concurrency))
    call_tags = {"purpose": "compare", **(tags or {})}

    async def one(model: str, index: int) -> Generation | BaseException:
        async with gate:
            try:
                return await gateway.generate(prompts[index], model=model, tags=call_tags, cache=False)
            except (ProviderError, GatewayError) as error:
                return error

    stats, records = [], []
    for model in models:
        jobs = [(i, one(model, i)) for _ in range(runs) for i in range(len(prompts))]
        results = await asyncio.gather(*(job for _, job in jobs))
        summary, grades = await _summarize(model, [(i, r) for (i, _), r in zip(jobs, results, strict=True)],
                                           prompts, scorer, references)
        stats.append(summary)
        records += [QualityRecord(model, scorer.name, grade, tags=call_tags) for grade in grades]
    if record_quality and records:
        await asyncio.to_thread(write_scores, gateway.store, records)
    baseline = _baseline(stats)
    return Comparison(tuple(_with_diffs(s, baseline) for s in stats), baseline.model if baseline else None,
                      len(prompts), runs, scorer.name)


async def _summarize(model: str, results: Sequence[tuple[int, Generation | BaseException]],
                     prompts: Sequence[TextRequest], scorer: Scorer, references: Sequence[str | None] | None
                     ) -> tuple[ModelStats, list[float]]:
    good = [(i, r) for i, r in results if isinstance(r, Generation)]
    failed = [type(r).__name__ for _, r in results if not isinstance(r, Generation)]
    grades = []
    for index, gen in good:
        reference = references[index] if references else None
        sample = Sample(gen.text or "", prompts[index].input_text(), reference, gen.finish_reason)
        grades.append((await scorer.score(sample)).score)
    latencies = [gen.latency_s * 1000 for _, gen in good]
    return ModelStats(
        model=model, calls=len(results), errors=len(failed),
        input_tokens=sum(g.usage.input_tokens for _, g in good),
        output_tokens=sum(g.usage.output_tokens for _, g in good),
        cost_usd=math.fsum(g.cost_usd for _, g in good), latency_ms_p50=percentile(latencies, 50),
        latency_ms_p99=percentile(latencies, 99), quality=math.fsum(grades) / len(grades) if grades else None,
        error_types={name: failed.count(name) for name in sorted(set(failed))},
    ), grades


def _baseline(stats: Sequence[ModelStats]) -> ModelStats | None:
    """The cheapest model that answered (the first one on a tie)."""
    answered = [s for s in stats if s.calls > s.errors]
    return min(answered, key=lambda s: s.cost_usd) if answered else None


def _with_diffs(stats: ModelStats, baseline: ModelStats | None) -> ModelStats:
    if baseline is None or stats.calls == stats.errors:
        return stats

    def diff(value: int, base: int) -> float | None:
        return 100.0 * (value - base) / base if base else None

    return replace(stats, tokens_diff_pct=diff(stats.total_tokens, baseline.total_tokens),
                   output_tokens_diff_pct=diff(stats.output_tokens, baseline.output_tokens))
