"""Routing's rows in the ledger: each decision with its candidates (``route_decisions``).

A routed call carries the tag ``route=<decision id>``, and the decision row's ``request_hash`` holds the provider's
request id of the call it routed (the decision id when the call failed before one existed). So a decision is found
by its own id, by the request id a caller saw, or by the ledger id of the call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from contentmill.ledger import LedgerStore
from contentmill.ledger.schema import call_tags, route_decisions

ROUTE_TAG = "route"


def write_decision(store: LedgerStore, row: Mapping[str, Any]) -> None:
    """Store one decision row (``RouteDecision.row``); a repeated write of the same id is ignored."""
    with store.transaction("record a routing decision") as conn:
        conn.execute(store.insert_ignoring_duplicates(route_decisions), [dict(row)])


def find_decision(store: LedgerStore, ident: str) -> dict[str, Any] | None:
    """The newest decision whose id or request id is ``ident``, or that routed the call with ledger id ``ident``."""
    by_tag = sa.select(call_tags.c.value).where(call_tags.c.call_id == ident, call_tags.c.key == ROUTE_TAG)
    query = (sa.select(route_decisions)
             .where(sa.or_(route_decisions.c.id == ident, route_decisions.c.request_hash == ident,
                           route_decisions.c.id.in_(by_tag.scalar_subquery())))
             .order_by(route_decisions.c.ts.desc()).limit(1))
    rows = store.rows(query, f"find routing decision {ident}")
    return dict(rows[0]) if rows else None

