"""Studio runs through a Prefect deployment (CONTENTMILL_STUDIO_DEPLOYMENT): a worker makes the video, the studio
follows it.

The run is started with ``arun_deployment`` (no wait) and its row keeps the flow run's id. Reading the row brings
it up to date from what is recorded elsewhere, at most every ``SYNC_S`` per process: the flow run's and its task
runs' states from the Prefect API, each step's cost from the ledger rows the worker wrote (tagged with the studio
run's id and the step), and once complete, the published folder from the flow's link artifact and its title,
length and files from the folder's manifest. Nothing runs in the server between reads, so a server restart loses
nothing: the worker goes on, and the next read catches up.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any
from uuid import UUID

import httpx
import sqlalchemy as sa

from contentmill.errors import ConfigError
from contentmill.ledger import LedgerStore
from contentmill.ledger.schema import call_tags, calls
from contentmill.server.web.studio_runs import StudioRun, StudioRuns, published_files
from contentmill.storage import ObjectStore
from contentmill.video.request import VideoRequest

log = logging.getLogger("contentmill.server.web")
SYNC_S = 2.0
RUN_TAG = "studio_run"  # the tag naming the studio run on every call it makes
ARTIFACT_KEY = "creator-video"  # the flow's link artifact (flows/creator_video.py)
_FOLDER = re.compile(r"(videos/[A-Za-z0-9_][A-Za-z0-9._-]*/)video\.mp4")
_STATES = {"SCHEDULED": "queued", "PENDING": "queued", "RUNNING": "running", "COMPLETED": "done",
           "FAILED": "failed", "CRASHED": "failed", "CANCELLED": "failed", "CANCELLING": "running",
           "PAUSED": "paused"}
_STEP_STATES = {"COMPLETED": "done", "RUNNING": "running", "FAILED": "failed", "CRASHED": "failed",
                "CANCELLED": "failed"}


def step_costs(ledger: LedgerStore, run_id: str) -> dict[str, dict[str, float]]:
    """Each step's calls, cost and saving from the ledger rows of one studio run (aggregated in the database)."""
    run_tag, step_tag = call_tags.alias("run_tag"), call_tags.alias("step_tag")
    query = (
        sa.select(step_tag.c.value.label("step"), sa.func.count().label("calls"),
                  sa.func.sum(calls.c.cost_usd).label("cost_usd"), sa.func.sum(calls.c.saved_usd).label("saved_usd"))
        .select_from(calls)
        .join(run_tag, sa.and_(run_tag.c.call_id == calls.c.id, run_tag.c.key == RUN_TAG, run_tag.c.value == run_id))
        .join(step_tag, sa.and_(step_tag.c.call_id == calls.c.id, step_tag.c.key == "step"))
        .group_by(step_tag.c.value)
    )
    return {str(row["step"]): {"calls": int(row["calls"]), "cost_usd": float(row["cost_usd"] or 0.0),
                               "saved_usd": float(row["saved_usd"] or 0.0)}
            for row in ledger.rows(query, "sum a studio run's steps")}


async def start_deployment(deployment: str, request: VideoRequest, run_id: str) -> str:
    """Start the deployment's flow run with the request as its parameters; its id. A deployment that cannot be
    reached or found is a ConfigError naming what to fix."""
    from prefect.deployments.flow_runs import arun_deployment
    from prefect.exceptions import ObjectNotFound

    parameters = request.model_dump(mode="json", exclude_defaults=True)
    try:
        flow_run = await arun_deployment(deployment, parameters=parameters, timeout=0, as_subflow=False,
                                         tags=["studio", f"{RUN_TAG}:{run_id}"])
    except ObjectNotFound:
        raise ConfigError(f"there is no Prefect deployment {deployment!r}: deploy it (prefect deploy --name "
                          "creator-video), or unset CONTENTMILL_STUDIO_DEPLOYMENT to make videos in the server"
                          ) from None
    except (OSError, RuntimeError, httpx.HTTPError) as exc:
        raise ConfigError(f"cannot start the Prefect deployment {deployment!r} ({type(exc).__name__}: {exc}); "
                          "check PREFECT_API_URL, or unset CONTENTMILL_STUDIO_DEPLOYMENT") from None
    return str(flow_run.id)


class DeploymentRuns:
    """Brings studio runs made by a deployment up to date when they are read."""

    def __init__(self, runs: StudioRuns, store: ObjectStore) -> None:
        self.runs = runs
        self.store = store
        self._synced: dict[str, float] = {}

    async def fresh(self, run: StudioRun) -> StudioRun:
        """``run`` as the Prefect API and the ledger have it now (or as it was, if read in the last ``SYNC_S``)."""
        if run.flow_run_id is None or run.state in ("done", "failed"):
            return run
        now = time.monotonic()
        if now - self._synced.get(run.id, 0.0) < SYNC_S:
            return run
        self._synced[run.id] = now
        try:
            values = await self._values(run)
        except Exception as exc:  # the Prefect API away: the page shows what was last known, and asks again
            log.warning("studio run %s: cannot read flow run %s from Prefect: %s", run.id, run.flow_run_id, exc)
            return run
        await asyncio.to_thread(self.runs.update, run.id, **values)
        updated = await asyncio.to_thread(self.runs.get, run.id, None)
        return updated or run

    async def _values(self, run: StudioRun) -> dict[str, Any]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            ArtifactFilter,
            ArtifactFilterFlowRunId,
            ArtifactFilterKey,
            FlowRunFilter,
            FlowRunFilterId,
        )

        assert run.flow_run_id is not None
        flow_run_id = UUID(run.flow_run_id)
        async with get_client() as client:
            flow_run = await client.read_flow_run(flow_run_id)
            tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            state = _STATES.get(flow_run.state_type.value if flow_run.state_type else "", "queued")
            link = None
            if state == "done":
                found = await client.read_artifacts(artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                    key=ArtifactFilterKey(any_=[ARTIFACT_KEY])))
                link = str(found[0].data) if found else None
        costs = await asyncio.to_thread(step_costs, self.runs.ledger, run.id)
        steps = _steps(run.steps, {t.name.rsplit("-", 1)[0]: t.state_type.value for t in tasks if t.state_type},
                       costs)
        values: dict[str, Any] = {"state": state, "steps": steps,
                                  "cost_usd": round(sum(c["cost_usd"] for c in costs.values()), 10),
                                  "saved_usd": round(sum(c["saved_usd"] for c in costs.values()), 10)}
        if state == "failed":
            values["error"] = (flow_run.state.message if flow_run.state else None) or "the flow run failed"
        elif state == "paused":
            values["error"] = "paused for review: approve or edit the script in the Prefect UI to go on"
        if state == "done":
            values.update(await asyncio.to_thread(self._published, link))
        return values

    def _published(self, link: str | None) -> dict[str, Any]:
        match = _FOLDER.search(link or "")
        if match is None:
            return {"state": "failed", "error": "the flow run finished without a link to its video"}
        folder = match.group(1)
        manifest = self.store.get_json(f"{folder}manifest.json") or {}
        clips = len((manifest.get("files") or {}).get("audio", []))
        return {"folder": folder, "title": manifest.get("title"), "duration_s": manifest.get("duration_s"),
                "files": published_files(folder, clips)}


def _steps(known: list[dict[str, Any]], states: dict[str, str], costs: dict[str, dict[str, float]]
           ) -> list[dict[str, Any]]:
    steps = [dict(step) for step in known]
    for step in steps:
        name = step["step"]
        if name in states:
            step["state"] = _STEP_STATES.get(states[name], "waiting")
        if name in costs:
            step.update(costs[name])
        elif step.get("state") == "done":
            step.update(calls=0, cost_usd=0.0)
    return steps
