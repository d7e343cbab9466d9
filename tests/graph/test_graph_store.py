"""The graph store on SQLite and PostgreSQL: migrations, the change clock, upserts, and readers that catch up
while many writers write."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import sqlalchemy as sa

from contentmill.knowledge_graph import GraphError, GraphStore, GraphUnavailable
from contentmill.knowledge_graph.migrations import MIGRATIONS, migrate
from contentmill.knowledge_graph.records import PREVIEW_CHARS, Edge, Node
from contentmill.knowledge_graph.schema import schema_version
from contentmill.ledger.migrations import Migration
from contentmill.ledger.records import utcnow


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return vector / np.linalg.norm(vector)


def test_opening_creates_the_tables_once(store_url: str) -> None:
    with GraphStore(store_url) as first:
        assert first.applied_migrations == [1]
        tables = set(sa.inspect(first.engine).get_table_names())
    assert {"kg_nodes", "kg_edges", "kg_clock", "kg_decisions", "kg_schema_version"} <= tables
    with GraphStore(store_url) as again:
        assert again.applied_migrations == [] and again.high() == 0


def test_a_newer_schema_is_refused(store_url: str) -> None:
    with GraphStore(store_url) as store:
        later = (*MIGRATIONS, Migration(2, "a later step", lambda conn: None))
        assert migrate(store.engine, later) == [2]
        with store.engine.connect() as conn:
            assert conn.scalar(sa.select(sa.func.max(schema_version.c.version))) == 2
    with pytest.raises(GraphError, match="newer than this contentmill knows"):
        GraphStore(store_url)


def test_changes_come_back_in_order_with_vectors_and_previews(store_url: str) -> None:
    with GraphStore(store_url) as store:
        long_text = "word " * 200
        vector = unit(1)
        first = store.write(
            [
                Node(
                    "a",
                    "output",
                    "text",
                    language="en",
                    cost_usd=0.5,
                    text=long_text,
                    vector=vector,
                    vector_model="m",
                    attrs={"tags": {"team": "shop"}},
                )
            ]
        )
        second = store.write([Node("b", "output", "audio")], [Edge("b", "a", "derived_from", {"scene": 2})])
        assert (first, second) == (1, 2) and store.high() == 2
        changes = store.changes(0)
        assert changes.high == 2 and [n.node.id for n in changes.nodes] == ["a", "b"]
        a = changes.nodes[0].node
        assert a.text == long_text[:PREVIEW_CHARS] and store.texts(["a"]) == {"a": long_text}
        assert a.vector is not None and np.array_equal(a.vector, vector) and a.vector.dtype == np.float32
        assert a.attrs == {"tags": {"team": "shop"}} and a.cost_usd == 0.5 and a.created_at.tzinfo is not None
        assert [(e.edge.src, e.edge.dst, e.edge.kind, e.edge.attrs, e.seq) for e in changes.edges] == [
            ("b", "a", "derived_from", {"scene": 2}, 2)
        ]
        later = store.changes(1)
        assert [n.node.id for n in later.nodes] == ["b"] and store.changes(2).nodes == []


def test_replace_ensure_and_merge(store_url: str) -> None:
    with GraphStore(store_url) as store:
        store.write([Node("e", "entity", "product", attrs={"name": "mug"})])
        store.write(ensure=[Node("e", "entity", "", attrs={"name": "other"})])
        assert store.changes(1).nodes == []  # ensure left the stored node alone
        store.write([Node("e", "entity", "product", attrs={"name": "cup"})])
        store.write(merge={"e": {"colour": "red"}})
        changes = store.changes(2)
        assert changes.high == 4 and [n.seq for n in changes.nodes] == [4]
        assert changes.nodes[0].node.attrs == {"name": "cup", "colour": "red"}
        with pytest.raises(GraphError, match="no node 'missing'"):
            store.write(merge={"missing": {"x": 1}})
        assert store.high() == 4  # the failed write took no number


def test_a_reader_catching_up_during_concurrent_writes_misses_nothing(store_url: str) -> None:
    writers, writes = 6, 15
    with GraphStore(store_url) as store:
        store.write([Node("root", "entity")])
        seen: dict[str, int] = {}
        done = threading.Event()

        def write(worker: int) -> None:
            with GraphStore(store_url) as own:
                for i in range(writes):
                    node = f"w{worker}-{i}"
                    own.write(
                        [Node(node, "output", "text", created_at=utcnow())], [Edge(node, "root", "describes")]
                    )

        def read() -> None:
            applied = 0
            while True:
                finished = done.is_set()
                changes = store.changes(applied)
                for stored in changes.nodes:
                    seen[stored.node.id] = stored.seq
                applied = changes.high
                if finished:
                    return

        reader = threading.Thread(target=read)
        reader.start()
        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done.set()
        reader.join()
        assert store.high() == 1 + writers * writes
        assert sorted(seen.values()) == list(range(1, 2 + writers * writes))
        assert len(store.changes(0).edges) == writers * writes


def test_stats_count_by_type_kind_and_edge(store_url: str) -> None:
    with GraphStore(store_url) as store:
        store.write(
            [
                Node("a", "output", "text", cost_usd=0.25, vector=unit(2), vector_model="m"),
                Node("b", "output", "audio", cost_usd=0.5),
                Node("r", "request", "text"),
            ],
            [Edge("r", "a", "produced"), Edge("r", "b", "produced")],
        )
        stats = store.stats()
    assert stats["seq"] == 1 and stats["edges"] == {"produced": 2}
    assert stats["nodes"]["output"] == {"total": 2, "by_kind": {"audio": 1, "text": 1}}
    assert stats["outputs"] == {"count": 2, "cost_usd": 0.75, "embedded": 1}
    assert stats["decisions"] == {"total": 0, "reused": 0, "saved_usd": 0.0}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/x", "runs on SQLite or PostgreSQL"),
        ("sqlite://", "must be a file"),
        ("::", "cannot be read"),
    ],
)
def test_unusable_urls_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(GraphError, match=message):
        GraphStore(url)


def test_an_unreachable_server_is_unavailable() -> None:
    with pytest.raises(GraphUnavailable, match="could not open the graph store"):
        GraphStore("postgresql://postgres@127.0.0.1:9/none")
