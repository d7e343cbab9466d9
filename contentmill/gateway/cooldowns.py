"""Per-model health: after repeated failures a model cools down and fallbacks take its calls.

A model that failed ``threshold`` times in a row (errors that retries could not fix) is skipped for
``cooldown_s``; the first call after the cooldown probes it again, and one success clears the record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _State:
    failures: int = 0
    until: float = 0.0


class Cooldowns:
    """Which models are resting after repeated failures, and for how long."""

    def __init__(self, threshold: int = 3, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._models: dict[str, _State] = {}

    def cooling(self, model: str) -> float:
        """Seconds of cooldown left for ``model`` (0 when it may be called)."""
        state = self._models.get(model)
        return max(0.0, state.until - self._clock()) if state else 0.0

    def failed(self, model: str) -> None:
        state = self._models.setdefault(model, _State())
        state.failures += 1
        if state.failures >= self.threshold:
            state.until = self._clock() + self.cooldown_s
            state.failures = 0

    def succeeded(self, model: str) -> None:
        self._models.pop(model, None)
