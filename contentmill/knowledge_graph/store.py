"""The graph's persistent store on SQLAlchemy: a SQLite file embedded, PostgreSQL with the services profile.

The engine, migrations and errors come from ``contentmill.sqlstore``, as the ledger's do. Every
write is one transaction that first takes the next number from ``kg_clock`` and stamps it on all it writes.
The clock row stays locked until commit, so writers follow one another and a number is visible only once
every smaller one is: a reader that has applied everything up to N asks for ``seq > N`` and misses nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from contentmill.errors import GraphError
from contentmill.knowledge_graph.migrations import GRAPH, migrate
from contentmill.knowledge_graph.records import (
    PREVIEW_CHARS,
    Changes,
    Edge,
    Node,
    StoredEdge,
    StoredNode,
    Vector,
)
from contentmill.knowledge_graph.schema import clock, decisions, edges, nodes
from contentmill.settings import Settings
from contentmill.sqlstore import SQLStore

GRAPH_FILE = "graph.sqlite3"
_NODE_COLUMNS = ("type", "kind", "language", "entity", "model", "template", "cost_usd", "location",
                 "created_at", "text", "attrs", "vector", "vector_model")


def graph_url(settings: Settings) -> str:
    """CONTENTMILL_GRAPH_DATABASE_URL, else CONTENTMILL_DATABASE_URL (the graph's tables sit beside the
    ledger's), else a SQLite file in CONTENTMILL_DATA_DIR of its own, so graph writes never wait on the
    ledger's write lock."""
    url = settings.graph_database_url or settings.database_url
    if url:
        return url
    return f"sqlite:///{(settings.data_dir / GRAPH_FILE).expanduser().resolve()}"


def vector_bytes(vector: Vector) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def vector_from(data: bytes | None) -> Vector | None:
    return None if data is None else np.frombuffer(data, dtype="<f4").astype(np.float32, copy=False)


def _node_row(node: Node, seq: int) -> dict[str, Any]:
    return {
        "id": node.id, "type": node.type, "kind": node.kind, "language": node.language, "entity": node.entity,
        "model": node.model, "template": node.template, "cost_usd": float(node.cost_usd),
        "location": node.location, "created_at": node.created_at, "seq": seq, "text": node.text,
        "attrs": dict(node.attrs), "vector": None if node.vector is None else vector_bytes(node.vector),
        "vector_model": node.vector_model,
    }


def _node_from(m: RowMapping) -> StoredNode:
    node = Node(
        id=m["id"], type=m["type"], kind=m["kind"], language=m["language"], entity=m["entity"],
        model=m["model"], template=m["template"], cost_usd=m["cost_usd"], location=m["location"],
        created_at=m["created_at"], text=m["text"], attrs=m["attrs"], vector=vector_from(m["vector"]),
        vector_model=m["vector_model"],
    )
    return StoredNode(node, m["seq"])


class GraphStore(SQLStore):
    """Nodes, edges, the change clock and reuse decisions in one SQLite or PostgreSQL database."""

    kind = GRAPH

    def migrate(self) -> list[int]:
        return migrate(self.engine)

    @classmethod
    def from_settings(cls, settings: Settings) -> GraphStore:
        return cls(graph_url(settings))

    @contextmanager
    def _snapshot(self, action: str) -> Iterator[Connection]:
        """A read transaction that sees one snapshot (SQLite's WAL read transactions always do)."""
        with self._errors(action), self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    # writing ---------------------------------------------------------------------------------------------

    def write(
        self,
        new: Sequence[Node] = (),
        links: Sequence[Edge] = (),
        *,
        ensure: Sequence[Node] = (),
        merge: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> int:
        """One transaction: ``ensure`` nodes are added when absent, ``new`` nodes replace any stored one,
        ``merge`` updates the attrs of stored nodes, ``links`` are upserted. Returns its change number."""
        # One row per key: PostgreSQL refuses an INSERT that would update the same row twice.
        new = list({n.id: n for n in new}.values())
        written = {n.id for n in new}
        ensure = [n for n in {n.id: n for n in ensure}.values() if n.id not in written]
        links = list({(e.src, e.dst, e.kind): e for e in links}.values())
        action = f"write {len(new) + len(ensure)} nodes and {len(links)} edges"
        with self._write(action) as conn:
            seq = self._next_seq(conn)
            if ensure:
                insert = self._dialect_insert(nodes)
                conn.execute(insert.on_conflict_do_nothing(index_elements=["id"]),
                             [_node_row(n, seq) for n in ensure])
            if new:
                insert = self._dialect_insert(nodes)
                update = {name: insert.excluded[name] for name in (*_NODE_COLUMNS, "seq")}
                conn.execute(insert.on_conflict_do_update(index_elements=["id"], set_=update),
                             [_node_row(n, seq) for n in new])
            for node_id, attrs in (merge or {}).items():
                self._merge_attrs(conn, node_id, attrs, seq)
            if links:
                insert = self._dialect_insert(edges)
                update = {"attrs": insert.excluded.attrs, "seq": insert.excluded.seq}
                rows = [{"src": e.src, "dst": e.dst, "kind": e.kind, "attrs": dict(e.attrs),
                         "created_at": e.created_at, "seq": seq} for e in links]
                upsert = insert.on_conflict_do_update(index_elements=["src", "dst", "kind"], set_=update)
                conn.execute(upsert, rows)
        return seq

    def _next_seq(self, conn: Connection) -> int:
        """The next change number; the row lock it takes orders this writer after every earlier one."""
        seq: int | None = conn.scalar(
            sa.update(clock).where(clock.c.id == 1).values(seq=clock.c.seq + 1).returning(clock.c.seq)
        )
        if seq is None:
            raise GraphError(f"graph store {self.url}: kg_clock has no row; the schema was changed by hand")
        return seq

    def _merge_attrs(self, conn: Connection, node_id: str, attrs: Mapping[str, Any], seq: int) -> None:
        current = conn.scalar(sa.select(nodes.c.attrs).where(nodes.c.id == node_id))
        if current is None:
            raise GraphError(f"graph store {self.url}: no node {node_id!r} to update")
        conn.execute(nodes.update().where(nodes.c.id == node_id).values(attrs={**current, **attrs}, seq=seq))

    # reading ---------------------------------------------------------------------------------------------

    def high(self) -> int:
        """The last change number written."""
        with self._read("read the change clock") as conn:
            return int(conn.scalar(sa.select(clock.c.seq).where(clock.c.id == 1)) or 0)

    def changes(self, after: int) -> Changes:
        """Nodes (text cut to a preview) and edges written after change ``after``, in change order."""
        preview = sa.func.substr(nodes.c.text, 1, PREVIEW_CHARS).label("text")
        columns = [c for c in nodes.c if c.name != "text"] + [preview]
        with self._snapshot(f"read changes after {after}") as conn:
            high = int(conn.scalar(sa.select(clock.c.seq).where(clock.c.id == 1)) or 0)
            if high <= after:
                return Changes(high=max(high, after), nodes=[], edges=[])
            window = sa.and_(nodes.c.seq > after, nodes.c.seq <= high)
            node_rows = conn.execute(sa.select(*columns).where(window).order_by(nodes.c.seq)).mappings()
            found_nodes = [_node_from(m) for m in node_rows]
            edge_window = sa.and_(edges.c.seq > after, edges.c.seq <= high)
            edge_rows = conn.execute(sa.select(edges).where(edge_window).order_by(edges.c.seq)).mappings()
            found_edges = [
                StoredEdge(Edge(m["src"], m["dst"], m["kind"], m["attrs"], m["created_at"]), m["seq"])
                for m in edge_rows
            ]
        return Changes(high=high, nodes=found_nodes, edges=found_edges)

    def texts(self, ids: Sequence[str]) -> dict[str, str]:
        """The full text of these nodes (the in-memory graph keeps previews)."""
        if not ids:
            return {}
        query = sa.select(nodes.c.id, nodes.c.text).where(nodes.c.id.in_(list(ids)))
        with self._read("read node texts") as conn:
            return {row.id: row.text for row in conn.execute(query) if row.text is not None}

    def node(self, node_id: str) -> Node | None:
        """One stored node with its full text, or None."""
        with self._read(f"read node {node_id}") as conn:
            row = conn.execute(sa.select(nodes).where(nodes.c.id == node_id)).mappings().first()
        return None if row is None else _node_from(row).node

    # decisions -------------------------------------------------------------------------------------------

    def add_decision(self, row: Mapping[str, Any]) -> None:
        """One reuse decision with its score, outside the change log (readers never need to replay them)."""
        with self._write("record a reuse decision") as conn:
            conn.execute(decisions.insert().values(**row))

    def decisions(self, since: datetime | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = sa.select(decisions).order_by(decisions.c.ts.desc(), decisions.c.id).limit(limit)
        if since is not None:
            query = query.where(decisions.c.ts >= since)
        with self._read("read reuse decisions") as conn:
            return [dict(m) for m in conn.execute(query).mappings()]

    # stats -----------------------------------------------------------------------------------------------

    def reuse_savings(self, since: datetime, until: datetime) -> dict[str, Any]:
        """Reuse decisions made in [since, until): how many, how many reused a prior output, the USD saved."""
        query = _reuse_totals().where(decisions.c.ts >= since, decisions.c.ts < until)
        with self._read("read reuse savings") as conn:
            total, reused, saved = conn.execute(query).one()
        return {"decisions": int(total or 0), "reused": int(reused or 0), "saved_usd": float(saved or 0.0)}

    def stats(self) -> dict[str, Any]:
        """Counts by node type and kind and by edge kind, output spend, reuse decisions and their savings."""
        by_node = sa.select(nodes.c.type, nodes.c.kind, sa.func.count(), sa.func.sum(nodes.c.cost_usd),
                            sa.func.count(nodes.c.vector)).group_by(nodes.c.type, nodes.c.kind)
        by_edge = sa.select(edges.c.kind, sa.func.count()).group_by(edges.c.kind)
        with self._snapshot("read graph stats") as conn:
            node_rows = conn.execute(by_node).all()
            edge_rows = conn.execute(by_edge).all()
            total, reused, saved = conn.execute(_reuse_totals()).one()
            seq = int(conn.scalar(sa.select(clock.c.seq)) or 0)
        node_counts: dict[str, dict[str, int]] = {}
        outputs = {"count": 0, "cost_usd": 0.0, "embedded": 0}
        for type_, kind, count, cost, embedded in node_rows:
            node_counts.setdefault(type_, {})[kind or "-"] = count
            if type_ == "output":
                outputs["count"] += count
                outputs["cost_usd"] += float(cost or 0.0)
                outputs["embedded"] += embedded
        return {
            "store": self.url, "seq": seq,
            "nodes": {t: {"total": sum(k.values()), "by_kind": k} for t, k in sorted(node_counts.items())},
            "edges": {kind: count for kind, count in sorted(edge_rows)},
            "outputs": outputs,
            "decisions": {"total": total or 0, "reused": int(reused or 0), "saved_usd": float(saved or 0.0)},
        }


def _reuse_totals() -> sa.Select[int, Any, Any]:
    """Reuse decisions counted, those that reused an output, and the USD they saved."""
    return sa.select(sa.func.count(), sa.func.sum(sa.case((decisions.c.reused, 1), else_=0)),
                     sa.func.sum(decisions.c.saved_usd))
