"""Routing's rows in the ledger: each decision with its candidates (``route_decisions``).

A routed call carries the tag ``route=<decision id>``, and the decision row's ``request_hash`` holds the provider's
request id of the call it routed (the decision id when the call failed before one existed). So a decision is found
by its own id, by the request id a caller saw, or by the ledger id of the call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from contentmill.ledger import LedgerStore
from contentmill.ledger.schema import call_tags, route_decisions

ROUTE_TAG = "route"


def write_decisions(store: LedgerStore, rows: Sequence[Mapping[str, Any]]) -> int:
    """Store decision rows (``RouteDecision.row``) in one transaction; a row already stored (same id) is skipped."""
    if rows:
        with store.transaction(f"record {len(rows)} routing decisions") as conn:
            conn.execute(store.insert_ignoring_duplicates(route_decisions), [dict(r) for r in rows])
    return len(rows)


def find_decision(store: LedgerStore, ident: str) -> dict[str, Any] | None:
    """The newest decision whose id or request id is ``ident``, or that routed the call with ledger id ``ident``."""
    by_tag = sa.select(call_tags.c.value).where(call_tags.c.call_id == ident, call_tags.c.key == ROUTE_TAG)
    query = (sa.select(route_decisions)
             .where(sa.or_(route_decisions.c.id == ident, route_decisions.c.request_hash == ident,
                           route_decisions.c.id.in_(by_tag.scalar_subquery())))
             .order_by(route_decisions.c.ts.desc()).limit(1))
    rows = store.rows(query, f"find routing decision {ident}")
    return dict(rows[0]) if rows else None

