"""Schema migrations of the graph, applied in order when a store opens, as the ledger's are.

Each step runs once, in one transaction with its ``kg_schema_version`` row, under a lock that makes
concurrent openers wait (``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite). The graph
keeps its own version table and lock key because it may share a PostgreSQL database with the ledger. A
step's tables are frozen as released; a change to ``schema.py`` needs a new step here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from contentmill.knowledge_graph.errors import GraphError
from contentmill.knowledge_graph.schema import schema_version
from contentmill.ledger.migrations import WRITE, Migration
from contentmill.ledger.records import utcnow
from contentmill.ledger.schema import JSONType, UTCDateTime

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
    versions = [step.version for step in steps]
    if versions != list(range(1, len(steps) + 1)):
        raise GraphError(f"graph migrations must run 1, 2, 3, ... without gaps (got {versions})")
    applied: list[int] = []
    with engine.connect() as conn, conn.execution_options(**WRITE).begin():
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        schema_version.create(conn, checkfirst=True)
        current = conn.scalar(sa.select(sa.func.max(schema_version.c.version))) or 0
        if current > len(steps):
            raise GraphError(
                f"the graph's tables are at schema version {current}, newer than this contentmill knows "
                f"({len(steps)}): upgrade contentmill"
            )
        for step in steps[current:]:
            step.apply(conn)
            row = {"version": step.version, "description": step.description, "applied_at": utcnow()}
            conn.execute(schema_version.insert().values(**row))
            applied.append(step.version)
    return applied
