"""Fixtures of the tuner's tests: a user catalog pricing three made-up OpenAI-compatible models, a template
folder with planted A/B variants, and settings pointing the gateway at the fake upstream."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from tuning_helpers import KEY, PRICES, PROFILES

from contentmill.settings import Settings, load_settings
from contentmill.testing.harness import Upstream

AB_SYSTEM = "Write one product line for a shop. Use the facts given."
# Version 2 adds 22 tokens of instructions: about 30% more tokens a call in all; version 3 is version 1 again.
AB_PADDING = " Keep the tone warm and plain, and do not invent features, prices or reviews the facts do not state."


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    models = {name: {"modality": "text", "context_window": 16000, "tokenizer": "cl100k_base", **prices}
              for name, prices in PRICES.items()}
    path.write_text(yaml.safe_dump({"models": models}), encoding="utf-8")
    return path


def ab_template(version: str, system: str) -> dict[str, Any]:
    return {"name": "ab_line", "version": version, "description": "A/B test template", "max_output_tokens": 120,
            "variables": {"product": "str", "facts": "str"}, "system": system,
            "user": "Product: {product}\nFacts: {facts}"}


@pytest.fixture
def template_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    for version, system in (("1", AB_SYSTEM), ("2", AB_SYSTEM + AB_PADDING), ("3", AB_SYSTEM)):
        (folder / f"ab_line@{version}.yaml").write_text(yaml.safe_dump(ab_template(version, system)), "utf-8")
    return folder


@pytest.fixture
def fake_openai(upstream: Callable[..., Upstream]) -> Upstream:
    return upstream(model_profile=PROFILES)


@pytest.fixture
def settings(fake_openai: Upstream, tmp_path: Path, catalog_file: Path, template_dir: Path) -> Settings:
    return load_settings(openai_base_url=fake_openai.base_url, openai_api_key=SecretStr(KEY),
                         data_dir=tmp_path / "data", catalog_file=catalog_file, template_dirs=[template_dir],
                         cache_enabled=False, monitor_interval_s=0)
