"""Fixtures of the knowledge-graph tests: the embedding model loaded once per session, and stores on a SQLite
file or on a fresh PostgreSQL database (created for the test and dropped after it) on the server at
127.0.0.1:5432, or the one CONTENTMILL_TEST_POSTGRES_URL names. Without that server the PostgreSQL half is
skipped, except in CI (CI=true), where it fails."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from contentmill.knowledge_graph import GraphStore, KnowledgeGraph, SentenceEmbedder

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ADMIN_URL = os.environ.get(
    "CONTENTMILL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


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


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[sa.Engine | None]:
    """An AUTOCOMMIT engine on the server's maintenance database, or None when there is no server."""
    engine = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable at {ADMIN_URL} in CI: {type(exc.orig).__name__}")
        yield None
        return
    yield engine
    engine.dispose()


def postgres_database(admin: sa.Engine) -> Iterator[str]:
    name = f"cm_graph_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, pg_admin: sa.Engine | None) -> Iterator[str]:
    """An empty graph database of either kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'graph.sqlite3'}"
        return
    if pg_admin is None:
        pytest.skip(f"PostgreSQL is not reachable at {ADMIN_URL}; set CONTENTMILL_TEST_POSTGRES_URL")
    yield from postgres_database(pg_admin)


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
