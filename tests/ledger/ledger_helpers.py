"""Small builders shared by the ledger tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from contentmill.ledger import CallRecord
from contentmill.metering import Usage

T0 = datetime(2025, 5, 1, tzinfo=UTC)  # a Thursday
ADMIN_URL = os.environ.get(
    "CONTENTMILL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def call(**fields: Any) -> CallRecord:
    """A successful text call with small defaults; any field can be given."""
    values: dict[str, Any] = {
        "model": "openai:gpt-4o-mini",
        "api_type": "text",
        "outcome": "ok",
        "estimate": Usage(input_tokens=100, output_tokens=200, estimated=True),
        "usage": Usage(input_tokens=100, output_tokens=50),
        "cost_usd": 0.001,
        "ts": T0,
        "tags": {"team": "ads", "project": "spring"},
    }
    values.update(fields)
    return CallRecord(**values)


def wait_until(condition: Callable[[], bool], what: str, limit_s: float = 60.0) -> None:
    """Poll until ``condition`` holds; fails (rather than hangs) if it never does."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)
