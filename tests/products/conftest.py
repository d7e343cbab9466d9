"""Fixtures of the product-descriptions tests: the fake OpenAI-compatible upstream wired in as the provider of
every tier."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from products_helpers import KEY

from contentmill.testing.harness import Upstream


@pytest.fixture
def shop(upstream: Callable[..., Upstream], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
         ) -> Callable[..., Upstream]:
    """Start the fake upstream with options and make it the provider of every run in the test."""

    def start(**options: Any) -> Upstream:
        server = upstream(**options)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("CONTENTMILL_MONITOR_INTERVAL_S", "0")
        return server

    monkeypatch.chdir(tmp_path)  # no contentmill.toml from the working directory
    return start
