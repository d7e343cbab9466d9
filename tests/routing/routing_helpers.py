"""Small builders shared by the routing tests."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from contentmill.routing import RoutingConfig
from contentmill.routing.stats import Blended
from contentmill.settings import Settings, load_settings

KEY = "sk-test-routing-0123456789"
GPT4O, MINI = "openai:gpt-4o", "openai:gpt-4o-mini"


def settings_for(base_url: str, **overrides: Any) -> Settings:
    """Settings pointing the openai provider at a fake upstream; the data directory is the test's own (env)."""
    values: dict[str, Any] = {"openai_base_url": base_url, "openai_api_key": SecretStr(KEY), "max_retries": 0,
                              "cache_enabled": False, "monitor_interval_s": 0}
    return load_settings(**{**values, **overrides})


def two_model_config(**overrides: Any) -> RoutingConfig:
    """One tier of gpt-4o and gpt-4o-mini, both served by the fake upstream."""
    values: dict[str, Any] = {"tiers": {"standard": (GPT4O, MINI)}, "tier_order": ("standard",), "refresh_s": 0}
    return RoutingConfig(**{**values, **overrides})


def stat(model: str, **fields: Any) -> Blended:
    """Hand-made statistics: a model of quality 0.8, 1 s P99, $0.001 an output, no errors, serving chat in en."""
    values: dict[str, Any] = {"quality": 0.8, "latency_p99_s": 1.0, "cost_per_output_usd": 0.001, "error_rate": 0.0,
                              "sla_miss_rate": 0.0, "calls": 100, "quality_samples": 10, "languages": ("en",),
                              "task_kinds": ("chat",)}
    return Blended(model=model, **{**values, **fields})
