"""The studio's video runs in the ledger database: who asked, what, each step's progress and cost, the result.

A run's row is written as it goes, so any worker or replica answers a page that polls it, and a page reloaded
mid-run finds its progress. A running row is touched at least every ``HEARTBEAT_S``; one left untouched for
``STALE_S`` belongs to a process that died, and reads as ``interrupted`` (starting it again reuses every stored
step: what was paid is never paid twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from contentmill.ids import new_id
from contentmill.ledger import LedgerStore
from contentmill.ledger.schema import studio_runs
from contentmill.video.records import STEPS

HEARTBEAT_S = 10.0
STALE_S = 60.0
FINAL = ("done", "failed", "interrupted")


@dataclass(slots=True)
class StudioRun:
    id: str
    team: str
    topic: str
    request: dict[str, Any]
    state: str = "queued"
    steps: list[dict[str, Any]] = field(default_factory=lambda: [{"step": s, "state": "waiting"} for s in STEPS])
    cost_usd: float = 0.0
    saved_usd: float = 0.0
    key_id: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    title: str | None = None
    folder: str | None = None
    files: dict[str, Any] | None = None  # the published keys: video, subtitles, script, audio (a list)
    duration_s: float | None = None
    flow_run_id: str | None = None
    error: str | None = None

    @property
    def shown_state(self) -> str:
        """``interrupted`` for a queued or running row whose process stopped touching it (a deployment's run is
        the worker's: its state is what the Prefect API last said)."""
        stale = datetime.now(UTC) - self.updated_at > timedelta(seconds=STALE_S)
        local = self.flow_run_id is None
        return "interrupted" if local and self.state in ("queued", "running") and stale else self.state


_COLUMNS = tuple(c.name for c in studio_runs.columns)


class StudioRuns:
    """Rows of ``studio_runs``; every call blocks (async callers use a worker thread)."""

    def __init__(self, ledger: LedgerStore) -> None:
        self.ledger = ledger

    def create(self, team: str, key_id: str | None, request: dict[str, Any], run_id: str | None = None,
               flow_run_id: str | None = None) -> StudioRun:
        run = StudioRun(run_id or new_id(), team, str(request.get("topic", "")), request, key_id=key_id,
                        flow_run_id=flow_run_id)
        with self.ledger.transaction("record a studio run") as conn:
            conn.execute(studio_runs.insert().values({name: getattr(run, name) for name in _COLUMNS}))
        return run

    def update(self, run_id: str, **values: Any) -> None:
        values["updated_at"] = datetime.now(UTC)
        with self.ledger.transaction("update a studio run") as conn:
            conn.execute(studio_runs.update().where(studio_runs.c.id == run_id).values(values))

    def get(self, run_id: str, team: str | None) -> StudioRun | None:
        """The run, if it is ``team``'s (None: any team's)."""
        query = sa.select(studio_runs).where(studio_runs.c.id == run_id)
        if team is not None:
            query = query.where(studio_runs.c.team == team)
        rows = self.ledger.rows(query, "read a studio run")
        return _run(rows[0]) if rows else None

    def recent(self, team: str | None, limit: int = 50) -> list[StudioRun]:
        """The team's runs (None: every team's), newest first."""
        query = sa.select(studio_runs).order_by(studio_runs.c.created_at.desc()).limit(limit)
        if team is not None:
            query = query.where(studio_runs.c.team == team)
        return [_run(row) for row in self.ledger.rows(query, "list studio runs")]

    def teams(self, folder: str) -> set[str]:
        """The teams whose studio runs published ``folder``."""
        query = sa.select(studio_runs.c.team).where(studio_runs.c.folder == folder).distinct()
        return {str(row["team"]) for row in self.ledger.rows(query, "look up a video's teams")}


def _run(row: sa.RowMapping) -> StudioRun:
    return StudioRun(**{name: row[name] for name in _COLUMNS})


def published_files(folder: str, clips: int) -> dict[str, Any]:
    """The keys of a published video's files in the store (video/publish.py lays the folder out)."""
    return {"video": f"{folder}video.mp4", "subtitles": f"{folder}subtitles.srt", "script": f"{folder}script.json",
            "audio": [f"{folder}audio/scene-{n:02d}.wav" for n in range(1, clips + 1)]}
