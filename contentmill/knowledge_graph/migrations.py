"""Schema migrations of the graph, applied in order when a store opens, as the ledger's are (see
``contentmill.sqlstore``). The graph keeps its own version table and lock key because it may share a
PostgreSQL database with the ledger. A step's tables are frozen as released; a change to ``schema.py``
needs a new step here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from contentmill import sqlstore
from contentmill.errors import GraphError, GraphUnavailable
from contentmill.knowledge_graph.schema import schema_version
from contentmill.ledger.schema import JSONType, UTCDateTime
from contentmill.sqlstore import Migration, StoreKind

GRAPH = StoreKind("graph store", "graph.sqlite3", GraphError, GraphUnavailable)

# pg_advisory_xact_lock key: the bytes of "cmgraph!" read as a signed 64-bit integer.
PG_LOCK_KEY = int.from_bytes(b"cmgraph!", "big", signed=True)


def _v1_tables(conn: Connection) -> None:
    """Nodes, edges, the change clock and reuse decisions."""
    md = sa.MetaData()
    node_id = sa.String(200)
    sa.Table(
        "kg_nodes", md,
        sa.Column("id", node_id, primary_key=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("language", sa.String(16)),
        sa.Column("entity", node_id),
        sa.Column("model", sa.String(200)),
        sa.Column("template", sa.String(200)),
        sa.Column("cost_usd", sa.Double, nullable=False),
        sa.Column("location", sa.Text),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("text", sa.Text),
        sa.Column("attrs", JSONType, nullable=False),
        sa.Column("vector", sa.LargeBinary),
        sa.Column("vector_model", sa.String(200)),
        sa.Index("ix_kg_nodes_seq", "seq"),
        sa.Index("ix_kg_nodes_type_kind", "type", "kind"),
        sa.Index("ix_kg_nodes_entity", "entity"),
    )
    sa.Table(
        "kg_edges", md,
        sa.Column("src", node_id, sa.ForeignKey("kg_nodes.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("dst", node_id, sa.ForeignKey("kg_nodes.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("attrs", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Index("ix_kg_edges_seq", "seq"),
        sa.Index("ix_kg_edges_dst_kind", "dst", "kind"),
    )
    clock = sa.Table(
        "kg_clock", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    sa.Table(
        "kg_decisions", md,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("request_key", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("entity", node_id),
        sa.Column("template", sa.String(200), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("reused", sa.Boolean, nullable=False),
        sa.Column("score", sa.Double),
        sa.Column("threshold", sa.Double, nullable=False),
        sa.Column("matched_request", node_id),
        sa.Column("matched_output", node_id),
        sa.Column("saved_usd", sa.Double, nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Index("ix_kg_decisions_ts", "ts"),
    )
    md.create_all(conn)
    conn.execute(clock.insert().values(id=1, seq=0))


MIGRATIONS: tuple[Migration, ...] = (Migration(1, "kg_nodes, kg_edges, kg_clock, kg_decisions", _v1_tables),)


def migrate(engine: Engine, steps: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Bring the graph's tables up to the last step; returns the versions applied now (none: up to date)."""
    return sqlstore.migrate(engine, steps, version_table=schema_version, lock_key=PG_LOCK_KEY, kind=GRAPH)
