"""Fixtures of the knowledge-graph tests: the embedding model loaded once per session, and stores on a SQLite
file or on a fresh PostgreSQL database (created for the test and dropped after it) on the server at
127.0.0.1:5432, or the one CONTENTMILL_TEST_POSTGRES_URL names. Without that server the PostgreSQL half is
skipped, except in CI (CI=true), where it fails."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from contentmill.knowledge_graph import GraphStore, KnowledgeGraph, SentenceEmbedder

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def embedder() -> Iterator[SentenceEmbedder]:
    """all-MiniLM-L6-v2, loaded once for the whole session, on one torch thread: the suite shares a few cores
    with other processes, and one thread answers single queries faster there."""
    import torch

    threads = torch.get_num_threads()
    model = SentenceEmbedder(threads=1)
    model.encode(["warm up"])
    yield model
    torch.set_num_threads(threads)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, make_database: Callable[[str, str], str]) -> str:
    """An empty graph database of either kind (``make_database`` in tests/conftest.py)."""
    return make_database(request.param, "graph")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'graph.sqlite3'}"


@pytest.fixture
def open_graph(embedder: SentenceEmbedder) -> Iterator[Callable[..., KnowledgeGraph]]:
    """Open graphs on a store URL with the session's model, polling the store on every call; all close
    after the test."""
    opened: list[KnowledgeGraph] = []

    def open_(url: str, **options: object) -> KnowledgeGraph:
        graph = KnowledgeGraph(GraphStore(url), embedder, poll_interval_s=0.0, **options)  # type: ignore[arg-type]
        graph.catch_up()
        opened.append(graph)
        return graph

    yield open_
    for graph in opened:
        graph.close()
