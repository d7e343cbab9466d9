"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from contentmill.testing.harness import Upstream, start_upstream


@pytest.fixture
def upstream() -> Iterator[Callable[..., Upstream]]:
    """Start fake OpenAI-compatible servers, e.g. ``upstream(rpm=5, api_key=["sk-good"])``; all stop afterwards."""
    started: list[Upstream] = []

    def start(*args: str, **options: Any) -> Upstream:
        server = start_upstream(*args, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
