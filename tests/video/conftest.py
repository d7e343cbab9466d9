"""Fixtures of the creator video tests: a fresh data directory per test,
the fake OpenAI-compatible upstream wired in as text and speech provider, and a data directory linked to the
embedded Gemma model (``gemma_models`` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from contentmill.testing.harness import Upstream

ISOLATED = (
    "CONTENTMILL_TEXT_MODEL",
    "CONTENTMILL_SPEECH_MODEL",
    "CONTENTMILL_FONT_FILE",
    "CONTENTMILL_S3_BUCKET",
    "CONTENTMILL_S3_ENDPOINT_URL",
    "CONTENTMILL_CONFIG",
    "CONTENTMILL_CATALOG_FILE",
    "CONTENTMILL_LOG_LEVEL",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty CONTENTMILL_DATA_DIR, and no other contentmill or provider setting from the environment."""
    for name in ISOLATED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no contentmill.toml from the working directory
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("CONTENTMILL_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def openai_upstream(
    upstream: Callable[..., Upstream], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Upstream:
    """The fake upstream as the text (gpt-4o-mini) and speech (tts-1) provider of every run in the test."""
    server = upstream()
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("CONTENTMILL_TEXT_MODEL", "openai:gpt-4o-mini")
    monkeypatch.setenv("CONTENTMILL_SPEECH_MODEL", "openai:tts-1")
    return server


@pytest.fixture
def embedded_data_dir(data_dir: Path, gemma_models: Path) -> Path:
    """A fresh data directory whose models/ is the shared, already assembled Gemma."""
    (data_dir / "models").symlink_to(gemma_models, target_is_directory=True)
    return data_dir


