"""Where an experiment stands: each arm's tokens, cost and quality from the ledger, and which arm wins.

The test compares the two best arms on the experiment's metric (lower tokens or cost, higher quality) with
Welch's t-test; the winner is significant when p < ``alpha`` (0.05 by default), i.e. when the confidence
interval of the difference leaves out 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from contentmill.experiments.stats import Welch, welch
from contentmill.experiments.store import METRICS, Experiment, ExperimentStore, Metric

ALPHA = 0.05


@dataclass(frozen=True, slots=True)
class ArmStats:
    arm: str
    spec: str
    share_pct: float
    calls: int
    tokens_mean: float | None
    cost_mean_usd: float | None
    quality_mean: float | None
    quality_n: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "arm": self.arm, "spec": self.spec, "share_pct": self.share_pct, "calls": self.calls,
            "tokens_mean": _round(self.tokens_mean, 3), "cost_mean_usd": _round(self.cost_mean_usd, 10),
            "quality_mean": _round(self.quality_mean, 4), "quality_n": self.quality_n,
        }


@dataclass(frozen=True, slots=True)
class Status:
    experiment: Experiment
    arms: tuple[ArmStats, ...]
    leader: str | None
    runner_up: str | None
    test: Welch | None
    significant: bool
    alpha: float

    @property
    def verdict(self) -> str:
        metric = self.experiment.metric
        if self.leader is None or self.test is None:
            return f"not enough data yet: each arm needs at least two measured calls ({metric})"
        better = "fewer" if metric == "tokens" else ("cheaper" if metric == "cost" else "higher quality")
        change = _change_pct(self.test)
        change_text = f" ({change:+.1f}%)" if change is not None else ""
        if self.significant:
            return (f"arm {self.leader} wins on {metric}: {better}{change_text} than {self.runner_up}, "
                    f"p = {self.test.p:.3g} < {self.alpha}")
        return (f"no significant difference on {metric} yet: {self.leader} leads {self.runner_up}"
                f"{change_text}, p = {self.test.p:.3g} >= {self.alpha}")

    def as_dict(self) -> dict[str, Any]:
        e = self.experiment
        return {
            "name": e.name, "state": e.state, "metric": e.metric, "winner": e.winner,
            "created_at": e.created_at.isoformat(), "stopped_at": e.stopped_at.isoformat() if e.stopped_at else None,
            "arms": [a.as_dict() for a in self.arms], "leader": self.leader, "runner_up": self.runner_up,
            "significant": self.significant, "alpha": self.alpha, "test": "welch_t",
            "welch": self.test.as_dict() if self.test else None,
            "change_pct": _round(_change_pct(self.test), 3) if self.test else None, "verdict": self.verdict,
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def _change_pct(test: Welch | None) -> float | None:
    """The leader's mean against the runner-up's, in percent."""
    if test is None or test.mean_b == 0:
        return None
    return 100.0 * test.diff / test.mean_b


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def status(store: ExperimentStore, name: str, alpha: float = ALPHA) -> Status:
    """Each arm's measurements and the test between the two best arms on the experiment's metric."""
    experiment = store.get(name)
    samples = {metric: store.samples(experiment, metric) for metric in METRICS}
    arms = tuple(
        ArmStats(
            arm=a.name, spec=a.spec, share_pct=experiment.split.get(a.name, 0.0),
            calls=len(samples["tokens"].get(a.name, [])), tokens_mean=_mean(samples["tokens"].get(a.name, [])),
            cost_mean_usd=_mean(samples["cost"].get(a.name, [])),
            quality_mean=_mean(samples["quality"].get(a.name, [])), quality_n=len(samples["quality"].get(a.name, [])),
        )
        for a in experiment.arms
    )
    chosen = samples[experiment.metric]
    ranked = _ranked(experiment.metric, {a.name: chosen.get(a.name, []) for a in experiment.arms})
    if len(ranked) < 2:
        return Status(experiment, arms, ranked[0] if ranked else None, None, None, False, alpha)
    leader, runner_up = ranked[0], ranked[1]
    test = welch(chosen[leader], chosen[runner_up], confidence=1.0 - alpha)
    significant = test is not None and test.p < alpha
    return Status(experiment, arms, leader, runner_up, test, significant, alpha)


def _ranked(metric: Metric, values: dict[str, list[float]]) -> list[str]:
    """Arms with at least two values, best first."""
    measured = {arm: math.fsum(v) / len(v) for arm, v in values.items() if len(v) >= 2}
    return sorted(measured, key=lambda arm: -measured[arm] if metric == "quality" else measured[arm])
