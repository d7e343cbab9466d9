"""The graph's tables as the code uses them now (``migrations.py`` builds them in a database).

Every name starts with ``kg_``: in the services profile the graph shares the ledger's PostgreSQL database.
``kg_clock`` holds one row, the last change number; each write transaction takes the next one (which also
serializes writers, see ``store.py``) and stamps it on every node and edge it writes, so a reader catches up
with ``seq > last seen``.
"""

from __future__ import annotations

import sqlalchemy as sa

from contentmill.ledger.schema import JSONType, UTCDateTime

metadata = sa.MetaData()
ID = sa.String(200)

nodes = sa.Table(
    "kg_nodes", metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("type", sa.String(16), nullable=False),  # entity, field, request, output, template, model
    sa.Column("kind", sa.String(32), nullable=False),  # output: text, audio, ...; entity: product, topic
    sa.Column("language", sa.String(16)),
    sa.Column("entity", ID),
    sa.Column("model", sa.String(200)),
    sa.Column("template", sa.String(200)),
    sa.Column("cost_usd", sa.Double, nullable=False),
    sa.Column("location", sa.Text),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("text", sa.Text),
    sa.Column("attrs", JSONType, nullable=False),
    sa.Column("vector", sa.LargeBinary),  # float32, little-endian, L2-normalized
    sa.Column("vector_model", sa.String(200)),
    sa.Index("ix_kg_nodes_seq", "seq"),
    sa.Index("ix_kg_nodes_type_kind", "type", "kind"),
    sa.Index("ix_kg_nodes_entity", "entity"),
)

edges = sa.Table(
    "kg_edges", metadata,
    sa.Column("src", ID, sa.ForeignKey("kg_nodes.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("dst", ID, sa.ForeignKey("kg_nodes.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("attrs", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Index("ix_kg_edges_seq", "seq"),
    sa.Index("ix_kg_edges_dst_kind", "dst", "kind"),
)

clock = sa.Table(
    "kg_clock", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
)

decisions = sa.Table(
    "kg_decisions", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("ts", UTCDateTime(), nullable=False),
    sa.Column("request_key", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("language", sa.String(16), nullable=False),
    sa.Column("entity", ID),
    sa.Column("template", sa.String(200), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("reused", sa.Boolean, nullable=False),
    sa.Column("score", sa.Double),
    sa.Column("threshold", sa.Double, nullable=False),
    sa.Column("matched_request", ID),
    sa.Column("matched_output", ID),
    sa.Column("saved_usd", sa.Double, nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Index("ix_kg_decisions_ts", "ts"),
)

schema_version = sa.Table(
    "kg_schema_version", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", UTCDateTime(), nullable=False),
)
