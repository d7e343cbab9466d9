"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from contentmill.settings import get_settings
from contentmill.testing.harness import Upstream, start_upstream

VENDOR_VARIABLES = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "DEEPSEEK_API_KEY", "DEEPSEEK_BASE_URL",
                    "DASHSCOPE_API_KEY", "DASHSCOPE_BASE_URL", "QWEN_API_KEY", "QWEN_BASE_URL", "OLLAMA_BASE_URL")


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test gets its own data directory and none of the developer's contentmill or vendor settings."""
    for name in list(os.environ):
        if name.startswith("CONTENTMILL_") or name in VENDOR_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("CONTENTMILL_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server over HTTP on a free local port: an S3-compatible store, as MinIO or AWS would be."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


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
