"""What each step reports (model, usage, cost, reuse) and the content addresses its results are stored at.

A step's address is the hash of exactly the inputs its result depends on, so an equal request finds the
stored result instead of paying again, and a changed input (a new voice) misses only where it matters.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from contentmill.gateway import Generation
from contentmill.metering import Usage

T = TypeVar("T")
STEPS = ("script", "narration", "visuals", "subtitles", "render", "publish")


def digest(kind: str, version: int, inputs: Any) -> str:
    """sha256 of a step's kind, its version and its inputs in canonical JSON (sorted keys, exact text)."""
    canonical = json.dumps(
        {"kind": kind, "version": version, "inputs": inputs},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


async def every_one(parts: Iterable[Awaitable[T]]) -> list[T]:
    """Every part's result in order, each left to finish (and store itself) even when another fails, so a rerun
    pays only for what failed; the first failure is then raised."""
    outcomes = await asyncio.gather(*parts, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return list(outcomes)  # type: ignore[arg-type]  # no exception is left among them


class StepReport(BaseModel):
    """One step of one run: what it used and paid now, and what reuse of a stored result saved."""

    model_config = ConfigDict(frozen=True)

    step: str
    model: str | None = None
    calls: int = 0
    usage: dict[str, Any] = Field(default_factory=lambda: Usage().as_dict())
    cost_usd: float = 0.0
    cached: bool = False
    saved_usd: float = 0.0
    seconds: float = 0.0

    @classmethod
    def from_generations(
        cls,
        step: str,
        model: str | None,
        made: Iterable[Generation],
        *,
        reused_cost_usd: float = 0.0,
        reused: bool = False,
        seconds: float = 0.0,
    ) -> StepReport:
        """Sum the calls this run made; ``reused_cost_usd`` is what stored parts had cost when first made."""
        calls = list(made)
        usage = sum((gen.usage for gen in calls), Usage())
        return cls(
            step=step,
            model=model,
            calls=len(calls),
            usage=usage.as_dict(),
            cost_usd=round(sum(gen.cost_usd for gen in calls), 10),
            cached=reused and not calls,
            saved_usd=round(reused_cost_usd, 10),
            seconds=round(seconds, 4),
        )

    def reused(self, seconds: float = 0.0) -> StepReport:
        """This report as seen by a later run that found the result stored: nothing used, its cost saved."""
        return StepReport(
            step=self.step,
            model=self.model,
            cached=True,
            saved_usd=round(self.cost_usd + self.saved_usd, 10),
            seconds=round(seconds, 4),
        )

    @property
    def made_cost_usd(self) -> float:
        """What the result cost to make, whether paid now or in an earlier run."""
        return self.cost_usd + self.saved_usd

    def usage_text(self) -> str:
        """Usage in a few words: tokens for text, characters and seconds for speech, images for pictures."""
        usage = Usage.from_dict(self.usage)
        parts = []
        if usage.input_tokens or usage.output_tokens:
            parts.append(f"{usage.input_tokens} in + {usage.output_tokens} out tokens")
        if usage.characters:
            parts.append(f"{usage.characters} chars")
        if usage.seconds:
            parts.append(f"{usage.seconds:.1f} s audio")
        if usage.images:
            parts.append(f"{usage.images} images")
        return ", ".join(parts) or "-"
