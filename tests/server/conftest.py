"""Fixtures of the server tests: a fake upstream and ``contentmill serve`` as real processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from server_helpers import UPSTREAM_KEY, server_env

from contentmill.testing.harness import Served, Upstream, start_gateway_server


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """``serve(env, *args)`` starts ``contentmill serve --port 0``; every server started stops afterwards."""
    started: list[Served] = []

    def start(env: dict[str, str], *args: str) -> Served:
        server = start_gateway_server(env, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def upstream_server(upstream: Callable[..., Upstream]) -> Upstream:
    return upstream(api_key=[UPSTREAM_KEY], rpm=100_000, tpm=100_000_000)


@pytest.fixture
def env(upstream_server: Upstream, tmp_path: Path) -> dict[str, str]:
    return server_env(upstream_server.base_url, tmp_path / "data")


@pytest.fixture
def server(serve: Callable[..., Served], env: dict[str, str]) -> Served:
    return serve(env)


@pytest.fixture
def client(server: Served) -> Iterator[httpx.Client]:
    """An HTTP client of ``server``'s root that keeps cookies and does not follow redirects."""
    with httpx.Client(base_url=server.root_url, timeout=30, follow_redirects=False) as http:
        yield http


@pytest.fixture
def sdk() -> Iterator[Callable[..., openai.OpenAI]]:
    """``sdk(server, key)``: an openai.OpenAI client of ``server`` (no retries unless asked), closed afterwards."""
    made: list[openai.OpenAI] = []

    def make(server: Served, key: str, max_retries: int = 0) -> openai.OpenAI:
        client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=max_retries)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
