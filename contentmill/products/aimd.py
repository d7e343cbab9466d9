"""How many jobs run at once: additive increase, multiplicative decrease (AIMD), as TCP does.

Each job that finishes cleanly adds ``1/limit`` (about one more slot per round of jobs); a job that met
a rate limit (a 429 the gateway retried or gave up on) halves the limit, and one much slower than the usual
job takes a fifth off, so the run backs off before the provider has to refuse it. ``trace`` keeps the
limit after each change, for the run's report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SLOW_FACTOR = 3.0  # a job this many times slower than the moving average counts as congestion
LATENCY_DECREASE = 0.8
RATE_LIMIT_DECREASE = 0.5
EWMA_WEIGHT = 0.2


@dataclass
class Aimd:
    limit: float = 4.0
    floor: float = 1.0
    ceiling: float = 32.0
    decreases: int = 0
    latency_ewma_s: float | None = None
    trace: list[float] = field(default_factory=list)

    @property
    def slots(self) -> int:
        return max(int(self.limit), 1)

    def observe(self, *, rate_limited: bool = False, latency_s: float | None = None) -> None:
        """Adjust the limit after one job."""
        slow = (latency_s is not None and self.latency_ewma_s is not None
                and latency_s > SLOW_FACTOR * self.latency_ewma_s)
        if latency_s is not None and not rate_limited:
            previous = self.latency_ewma_s
            self.latency_ewma_s = latency_s if previous is None else (
                (1 - EWMA_WEIGHT) * previous + EWMA_WEIGHT * latency_s)
        if rate_limited or slow:
            self.limit = max(self.floor, self.limit * (RATE_LIMIT_DECREASE if rate_limited else LATENCY_DECREASE))
            self.decreases += 1
        else:
            self.limit = min(self.ceiling, self.limit + 1.0 / self.limit)
        self.trace.append(round(self.limit, 3))
