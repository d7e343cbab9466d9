"""Quality scores in the ledger's ``quality_scores`` table, next to the calls they grade.

Each row names the model, the template version and the scorer, and carries tags (experiment, arm, ...), so
reports and experiments can average quality over any of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from contentmill.ids import new_id
from contentmill.ledger.records import check_tags, utcnow
from contentmill.ledger.schema import quality_scores
from contentmill.ledger.store import LedgerStore


@dataclass(frozen=True, slots=True)
class QualityRecord:
    """One grade of one output."""

    model: str
    scorer: str
    score: float
    call_id: str | None = None
    template_version: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    ts: datetime = field(default_factory=utcnow)


def write_scores(store: LedgerStore, records: Sequence[QualityRecord]) -> int:
    """Insert quality scores in one transaction; tags are checked like call tags (no credentials)."""
    rows: list[dict[str, Any]] = [
        {"id": r.id, "ts": r.ts, "call_id": r.call_id, "model": r.model, "template_version": r.template_version,
         "scorer": r.scorer[:32], "score": float(r.score), "tags": check_tags(r.tags)}
        for r in records
    ]
    if rows:
        with store.transaction(f"write {len(rows)} quality scores") as conn:
            conn.execute(quality_scores.insert(), rows)
    return len(rows)


def scores_by_tag(store: LedgerStore, key: str, value: str, group_by: str, since: datetime | None = None
                  ) -> dict[str, list[float]]:
    """Scores (since ``since``) of rows tagged ``key=value``, grouped by the value of their tag ``group_by``."""
    query = sa.select(quality_scores.c.score, quality_scores.c.tags).order_by(quality_scores.c.ts)
    if since is not None:
        query = query.where(quality_scores.c.ts >= since)
    rows = store.rows(query, "read quality scores")
    grouped: dict[str, list[float]] = {}
    for row in rows:
        tags = row["tags"] or {}
        if tags.get(key) == value and group_by in tags:
            grouped.setdefault(str(tags[group_by]), []).append(float(row["score"]))
    return grouped
