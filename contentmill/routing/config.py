"""What the router is told: tiers of models, the matrix weights, how priors blend with live statistics, and
when budget pressure moves work to a cheaper tier.

Defaults live here; a TOML or YAML file (``CONTENTMILL_ROUTING_FILE``) overrides any part of them::

    default_tier = "standard"
    tier_order = ["premium", "standard", "light"]       # most to least expensive
    [tiers]
    premium = ["openai:gpt-4o", "deepseek:deepseek-chat"]
    [task_tiers]
    product_description = "standard"
    [weights]                                           # normalized to sum 1
    quality = 0.30
    latency = 0.20
    cost = 0.25
    stability = 0.15
    coverage = 0.10
    [[degradation]]                                     # share of a budget spent -> what happens to whom
    at = 0.8
    priorities = ["low"]
    action = "downgrade"                                # or "defer"
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contentmill.errors import ConfigError

DIMENSIONS = ("quality", "latency", "cost", "stability", "coverage")
Priority = Literal["low", "normal", "high"]
PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high")


@dataclass(frozen=True, slots=True)
class Weights:
    """The five matrix weights, normalized to sum 1 (the defaults are the issue's 0.30/0.20/0.25/0.15/0.10)."""

    quality: float = 0.30
    latency: float = 0.20
    cost: float = 0.25
    stability: float = 0.15
    coverage: float = 0.10

    def __post_init__(self) -> None:
        values = self.values()
        bad = [f"{n}={v!r}" for n, v in zip(DIMENSIONS, values, strict=True) if not math.isfinite(v) or v < 0]
        if bad:
            raise ConfigError(f"routing weights must be finite and non-negative (got {', '.join(bad)})")
        total = sum(values)
        if total <= 0:
            raise ConfigError(f"at least one routing weight must be positive ({', '.join(DIMENSIONS)})")
        if abs(total - 1.0) > 1e-9:
            for name, value in zip(DIMENSIONS, values, strict=True):
                object.__setattr__(self, name, value / total)

    def values(self) -> tuple[float, ...]:
        return tuple(float(getattr(self, n)) for n in DIMENSIONS)

    def as_dict(self) -> dict[str, float]:
        return dict(zip(DIMENSIONS, self.values(), strict=True))

    @classmethod
    def of(cls, value: Weights | Mapping[str, float] | str | None) -> Weights:
        """Weights from a mapping (dimensions it leaves out weigh 0) or ``"quality=0.5,cost=0.5"``; None: defaults."""
        if value is None or isinstance(value, Weights):
            return value or cls()
        if isinstance(value, str):
            pairs = [part.partition("=") for part in value.split(",") if part.strip()]
            if any(not sep for _, sep, _ in pairs):
                raise ConfigError(f"weights are NAME=NUMBER pairs separated by commas, e.g. quality=0.5,cost=0.5 "
                                  f"(got {value!r})")
            try:
                value = {name.strip(): float(number) for name, _, number in pairs}
            except ValueError:
                raise ConfigError(f"a routing weight is not a number in {value!r}") from None
        unknown = set(value) - set(DIMENSIONS)
        if unknown:
            raise ConfigError(f"unknown routing weights {sorted(unknown)}; the dimensions are {', '.join(DIMENSIONS)}")
        return cls(**{f.name: float(value.get(f.name, 0.0)) for f in fields(cls)})


class DegradationStep(BaseModel):
    """Once ``at`` (a share, 0-1) of an applicable budget is spent, work of ``priorities`` is moved ``steps``
    tiers cheaper (``downgrade``) or refused for now (``defer``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    at: float = Field(gt=0)
    priorities: tuple[Priority, ...]
    action: Literal["downgrade", "defer"] = "downgrade"
    steps: int = Field(default=1, ge=1)


DEFAULT_TIERS: dict[str, list[str]] = {
    "premium": ["openai:gpt-4o", "deepseek:deepseek-chat", "qwen:qwen-plus"],
    "standard": ["openai:gpt-4.1-mini", "qwen:qwen-plus", "openai:gpt-4o-mini"],
    "light": ["openai:gpt-4o-mini", "qwen:qwen-turbo"],
}
DEFAULT_DEGRADATION = (
    DegradationStep(at=0.8, priorities=("low",)),
    DegradationStep(at=0.9, priorities=("normal",)),
    DegradationStep(at=0.95, priorities=("low",), action="defer"),
)


class RoutingConfig(BaseModel):
    """Tiers, weights, priors and the degradation policy (see the module docstring for the file format)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    tiers: dict[str, tuple[str, ...]] = Field(default_factory=lambda: {k: tuple(v) for k, v in DEFAULT_TIERS.items()})
    tier_order: tuple[str, ...] = ("premium", "standard", "light")
    default_tier: str = "standard"
    task_tiers: dict[str, str] = Field(default_factory=dict)
    weights: Weights = Field(default_factory=Weights)
    degradation: tuple[DegradationStep, ...] = DEFAULT_DEGRADATION
    # How many calls (and quality scores) the catalog prior counts as: see routing.stats.blend.
    prior_calls: float = Field(default=20.0, ge=0)
    prior_scores: float = Field(default=5.0, ge=0)
    prior_error_rate: float = Field(default=0.02, ge=0, le=1)
    default_latency_s: float = Field(default=5.0, gt=0)  # P99 prior of a model whose catalog entry names none
    window_s: float = Field(default=86_400.0, gt=0)  # live statistics look this far back
    max_rows: int = Field(default=50_000, ge=100)  # newest calls read per refresh, so a refresh stays bounded
    refresh_s: float = Field(default=30.0, ge=0)  # statistics older than this are re-read before a routed call
    sla_latency_s: float = Field(default=10.0, gt=0)  # a call slower than this is an SLA miss
    typical_input_tokens: int = Field(default=500, ge=0)  # the request the cost prior prices
    typical_output_tokens: int = Field(default=300, ge=1)

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, value: Any) -> Weights:
        return Weights.of(value)

    @model_validator(mode="after")
    def _tiers_known(self) -> RoutingConfig:
        unordered = set(self.tiers) - set(self.tier_order)
        if unordered:
            raise ValueError(f"tiers {sorted(unordered)} are missing from tier_order {list(self.tier_order)}")
        named = {self.default_tier, *self.task_tiers.values()} - set(self.tiers)
        if named:
            raise ValueError(f"tiers {sorted(named)} are named but not defined; defined: {sorted(self.tiers)}")
        empty = [name for name, models in self.tiers.items() if not models]
        if empty:
            raise ValueError(f"tiers {empty} list no models")
        return self

    def tier_models(self, tier: str) -> tuple[str, ...]:
        try:
            return self.tiers[tier]
        except KeyError:
            raise ConfigError(f"unknown tier {tier!r}; the tiers are {', '.join(self.tier_order)}") from None

    def cheaper(self, tier: str, steps: int) -> str:
        """The tier ``steps`` places cheaper than ``tier`` among the defined ones (the cheapest at most)."""
        ladder = [t for t in self.tier_order if t in self.tiers]
        return ladder[min(ladder.index(tier) + steps, len(ladder) - 1)]


def load_routing_config(path: Path | None = None) -> RoutingConfig:
    """The defaults, or the defaults overridden by a TOML/YAML file."""
    if path is None:
        return RoutingConfig()
    if not path.is_file():
        raise ConfigError(f"routing file {path} does not exist (CONTENTMILL_ROUTING_FILE)")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"routing file {path} cannot be parsed: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"routing file {path}: expected a table of settings (tiers, weights, degradation, ...)")
    try:
        return RoutingConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"routing file {path}: {problems}") from None
