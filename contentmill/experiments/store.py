"""Experiments in the ledger's ``experiments`` table, and each arm's measurements read back from the ledger.

An arm is a template version (``name@version``), optionally on its own model (``name@version+provider:model``).
Calls of an experiment carry the tags ``experiment=NAME`` and ``arm=ARM``, so tokens and cost per arm come from
``calls``/``call_tags`` and quality from ``quality_scores`` rows with the same tags.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

import sqlalchemy as sa

from contentmill.errors import ExperimentError
from contentmill.ledger.records import utcnow
from contentmill.ledger.schema import call_tags, calls, experiments
from contentmill.ledger.store import LedgerStore
from contentmill.prompts.library import TemplateLibrary, parse_spec
from contentmill.quality.records import scores_by_tag
from contentmill.settings import Settings

Metric = Literal["tokens", "cost", "quality"]
State = Literal["running", "stopped", "promoted"]
METRICS: tuple[Metric, ...] = ("tokens", "cost", "quality")
_ARM = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


@dataclass(frozen=True, slots=True)
class Arm:
    name: str
    template: str
    version: str
    model: str | None = None

    @property
    def spec(self) -> str:
        return f"{self.template}@{self.version}" + (f"+{self.model}" if self.model else "")

    @classmethod
    def parse(cls, name: str, spec: str) -> Arm:
        """``TEMPLATE@VERSION`` or ``TEMPLATE@VERSION+provider:model``."""
        if not _ARM.match(name):
            raise ExperimentError(f"arm name {name!r}: use up to 32 letters, digits, '_' or '-'")
        template_spec, _, model = spec.strip().partition("+")
        template, version = parse_spec(template_spec)
        if version is None:
            raise ExperimentError(f"arm {name}: name the template version, e.g. {template}@2")
        if model and ":" not in model:
            raise ExperimentError(f"arm {name}: name the model as provider:model (got {model!r})")
        return cls(name, template, version, model or None)


@dataclass(frozen=True, slots=True)
class Experiment:
    name: str
    arms: tuple[Arm, ...]
    split: Mapping[str, float]
    metric: Metric = "tokens"
    state: State = "running"
    created_at: datetime = field(default_factory=utcnow)
    winner: str | None = None
    stopped_at: datetime | None = None
    notes: Mapping[str, Any] = field(default_factory=dict)

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise ExperimentError(f"experiment {self.name} has no arm {name!r}; arms: {self.arm_names()}")

    def arm_names(self) -> str:
        return ", ".join(a.name for a in self.arms)


def parse_arms(text: str) -> tuple[Arm, ...]:
    """``a=TEMPLATE@VERSION,b=...`` as arms (two or more, distinct names)."""
    arms = []
    for part in (p for p in text.split(",") if p.strip()):
        name, sep, spec = part.partition("=")
        if not sep:
            raise ExperimentError(f"--arms takes NAME=TEMPLATE@VERSION pairs separated by commas (got {part!r})")
        arms.append(Arm.parse(name.strip(), spec))
    if len(arms) < 2 or len({a.name for a in arms}) != len(arms):
        raise ExperimentError("an experiment needs two or more arms with distinct names, e.g. a=x@1,b=x@2")
    return tuple(arms)


def parse_split(text: str | None, arms: tuple[Arm, ...]) -> dict[str, float]:
    """``--split 50,50`` (percentages in arm order, summing to 100); even shares when not given."""
    if not text:
        return {a.name: 100.0 / len(arms) for a in arms}
    try:
        shares = [float(p) for p in text.split(",")]
    except ValueError:
        raise ExperimentError(f"--split takes numbers separated by commas, e.g. 50,50 (got {text!r})") from None
    if len(shares) != len(arms) or any(s < 0 for s in shares) or abs(sum(shares) - 100.0) > 1e-6:
        raise ExperimentError(f"--split needs {len(arms)} non-negative percentages summing to 100 (got {text})")
    return {a.name: s for a, s in zip(arms, shares, strict=True)}


def _from_row(row: sa.RowMapping) -> Experiment:
    arms = tuple(Arm(name, d["template"], d["version"], d.get("model")) for name, d in row["arms"].items())
    return Experiment(
        name=row["name"], arms=arms, split={k: float(v) for k, v in row["split"].items()},
        metric=cast(Metric, row["metric"]), state=cast(State, row["state"]), created_at=row["created_at"],
        winner=row["winner"], stopped_at=row["stopped_at"], notes=row["notes"] or {},
    )


class ExperimentStore:
    """Start, read, stop and promote experiments; read each arm's measurements."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store

    def start(self, experiment: Experiment, library: TemplateLibrary | None = None) -> Experiment:
        if not _NAME.match(experiment.name):
            raise ExperimentError(f"experiment name {experiment.name!r}: letters, digits, '.', '_' or '-'")
        if experiment.metric not in METRICS:
            raise ExperimentError(f"--metric is one of {', '.join(METRICS)} (got {experiment.metric!r})")
        if set(experiment.split) != {a.name for a in experiment.arms}:
            raise ExperimentError("the split must give a share to every arm and to no other")
        if library is not None:
            for arm in experiment.arms:
                library.get(arm.template, arm.version)  # a TemplateError names what is missing
        if self.find(experiment.name) is not None:
            raise ExperimentError(f"experiment {experiment.name} already exists; pick another name")
        row = {
            "name": experiment.name, "created_at": experiment.created_at, "state": "running",
            "arms": {a.name: {"template": a.template, "version": a.version, "model": a.model}
                     for a in experiment.arms},
            "split": dict(experiment.split), "metric": experiment.metric, "winner": None, "stopped_at": None,
            "notes": dict(experiment.notes),
        }
        with self.store.transaction(f"start experiment {experiment.name}") as conn:
            conn.execute(experiments.insert().values(**row))
        return self.get(experiment.name)

    def find(self, name: str) -> Experiment | None:
        rows = self.store.rows(sa.select(experiments).where(experiments.c.name == name), "read an experiment")
        return _from_row(rows[0]) if rows else None

    def get(self, name: str) -> Experiment:
        found = self.find(name)
        if found is None:
            known = ", ".join(e.name for e in self.all()) or "none"
            raise ExperimentError(f"no experiment named {name!r}; known: {known} (start one with "
                                  "contentmill experiment start)")
        return found

    def all(self) -> list[Experiment]:
        rows = self.store.rows(sa.select(experiments).order_by(experiments.c.created_at), "read experiments")
        return [_from_row(r) for r in rows]

    def stop(self, name: str, *, winner: str | None = None, notes: Mapping[str, Any] | None = None) -> Experiment:
        """Stop the experiment; with ``winner`` it is promoted (that arm's template version is pinned)."""
        current = self.get(name)
        if current.state != "running":
            raise ExperimentError(f"experiment {name} is already {current.state}")
        if winner is not None:
            current.arm(winner)
        values = {"state": "promoted" if winner else "stopped", "winner": winner, "stopped_at": utcnow(),
                  "notes": {**current.notes, **(notes or {})}}
        with self.store.transaction(f"stop experiment {name}") as conn:
            conn.execute(experiments.update().where(experiments.c.name == name).values(**values))
        return self.get(name)

    def samples(self, experiment: Experiment, metric: Metric) -> dict[str, list[float]]:
        """Per arm, one value per successful call (tokens in + out, or USD) or per quality score."""
        if metric == "quality":
            return scores_by_tag(self.store, "experiment", experiment.name, "arm", experiment.created_at)
        exp_tag, arm_tag = call_tags.alias("exp_tag"), call_tags.alias("arm_tag")
        value = (sa.func.coalesce(calls.c.input_tokens, 0) + sa.func.coalesce(calls.c.output_tokens, 0)
                 if metric == "tokens" else calls.c.cost_usd)
        query = (
            sa.select(arm_tag.c.value.label("arm"), value.label("value"))
            .select_from(calls.join(exp_tag, exp_tag.c.call_id == calls.c.id)
                         .join(arm_tag, arm_tag.c.call_id == calls.c.id))
            .where(exp_tag.c.key == "experiment", exp_tag.c.value == experiment.name, arm_tag.c.key == "arm",
                   calls.c.outcome == "ok", calls.c.ts >= experiment.created_at)
            .order_by(calls.c.ts, calls.c.id)
        )
        grouped: dict[str, list[float]] = {a.name: [] for a in experiment.arms}
        for row in self.store.rows(query, f"read the calls of experiment {experiment.name}"):
            grouped.setdefault(row["arm"], []).append(float(row["value"]))
        return grouped

    def pins(self) -> dict[str, str]:
        """Template name -> version of each promoted winner (the latest promotion wins)."""
        pins: dict[str, str] = {}
        promoted = sorted((e for e in self.all() if e.state == "promoted" and e.winner),
                          key=lambda e: e.stopped_at or e.created_at)
        for experiment in promoted:
            arm = experiment.arm(experiment.winner or "")
            pins[arm.template] = arm.version
        return pins


def promoted_library(settings: Settings, store: LedgerStore) -> TemplateLibrary:
    """The template library with every promoted experiment's winning version pinned."""
    return TemplateLibrary.from_settings(settings, ExperimentStore(store).pins())
