"""Studio runs in the server process: the creator video's steps in a background task that outlives its request.

A page that starts a run gets its id at once; the run goes on whether or not anyone watches (a client that
leaves cancels nothing: what was paid is kept), and writes each step's start, end and cost to its row, which is
what a page polls, from any worker. At most ``MAX_RUNNING`` videos render at once in a process (the rest wait,
``queued``): rendering is CPU work that the API's callers share.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from contentmill.errors import ContentmillError
from contentmill.gateway import Gateway
from contentmill.gateway.policy import NO_LIMITS, CallLimits, caller_limits
from contentmill.server.web.studio_runs import HEARTBEAT_S, StudioRun, StudioRuns, published_files
from contentmill.settings import Settings
from contentmill.storage import ObjectStore
from contentmill.video.pipeline import make_video
from contentmill.video.progress import StepEvent, listening
from contentmill.video.request import VideoRequest

log = logging.getLogger("contentmill.server.web")
MAX_RUNNING = 2
INTERRUPTED = "the server stopped during this run; start it again: the steps it finished are stored, not paid again"


def apply_event(steps: list[dict[str, Any]], event: StepEvent) -> None:
    """A step's start or end into the run's list of steps (a step the list lacks is added at its end)."""
    entry = next((s for s in steps if s["step"] == event.step), None)
    if entry is None:
        entry = {"step": event.step}
        steps.append(entry)
    entry.update(state="running" if event.phase == "start" else "done", detail=event.detail)
    report = event.report
    if report is not None:
        entry.update(model=report.model, calls=report.calls, cost_usd=report.cost_usd, saved_usd=report.saved_usd,
                     cached=report.cached, seconds=report.seconds)


def drained(events: asyncio.Queue[StepEvent | None], steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``steps`` with the events still queued applied: a run that stops early records its last step too."""
    while not events.empty():
        event = events.get_nowait()
        if event is not None:
            apply_event(steps, event)
    return steps


def totals(steps: list[dict[str, Any]]) -> dict[str, float]:
    return {"cost_usd": round(sum(s.get("cost_usd", 0.0) for s in steps), 10),
            "saved_usd": round(sum(s.get("saved_usd", 0.0) for s in steps), 10)}


class StudioRunner:
    """Starts runs as tasks of this process's event loop and keeps them referenced until they end."""

    def __init__(self, settings: Settings, gateway: Gateway, store: ObjectStore, runs: StudioRuns) -> None:
        self.settings = settings
        self.gateway = gateway
        self.store = store
        self.runs = runs
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_RUNNING)

    def start(self, run: StudioRun, request: VideoRequest, limits: CallLimits = NO_LIMITS) -> None:
        """Make the video in a task of this loop; ``limits`` (the key's budget and rates) hold every call."""
        task = asyncio.get_running_loop().create_task(self._run(run, request, limits), name=f"studio-run-{run.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, run: StudioRun, request: VideoRequest, limits: CallLimits) -> None:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[StepEvent | None] = asyncio.Queue()
        steps = run.steps

        async def persist() -> None:
            while (event := await events.get()) is not None:
                apply_event(steps, event)
                await asyncio.to_thread(self.runs.update, run.id, steps=steps, **totals(steps))

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(HEARTBEAT_S)
                await asyncio.to_thread(self.runs.update, run.id)

        beat = loop.create_task(heartbeat())
        writer = loop.create_task(persist())
        try:
            async with self._slots:
                await asyncio.to_thread(self.runs.update, run.id, state="running")
                def heard(event: StepEvent) -> None:  # called from worker threads too
                    loop.call_soon_threadsafe(events.put_nowait, event)

                with listening(heard), caller_limits(limits):
                    result = await make_video(request, settings=self.settings, gateway=self.gateway,
                                              store=self.store)
            events.put_nowait(None)
            await writer
            steps = [{"step": name, "state": "done", "model": r.model, "calls": r.calls, "cost_usd": r.cost_usd,
                      "saved_usd": r.saved_usd, "cached": r.cached, "seconds": r.seconds,
                      "detail": next((s.get("detail", "") for s in run.steps if s["step"] == name), "")}
                     for name, r in result.steps.items()]
            await asyncio.to_thread(
                self.runs.update, run.id, state="done", steps=steps, cost_usd=result.cost_usd,
                saved_usd=result.saved_usd, title=result.title, folder=result.folder,
                files=published_files(result.folder, len(result.audio)), duration_s=result.duration_s)
        except asyncio.CancelledError:  # the server stopping: its event loop cancels what still runs
            self._ended(run.id, drained(events, steps), "interrupted", INTERRUPTED)
            raise
        except ContentmillError as exc:
            self._ended(run.id, drained(events, steps), "failed", str(exc))
        except Exception as exc:
            log.exception("studio run %s failed", run.id)
            self._ended(run.id, drained(events, steps), "failed", f"{type(exc).__name__}: {exc}")
        finally:
            beat.cancel()
            writer.cancel()

    def _ended(self, run_id: str, steps: list[dict[str, Any]], state: str, error: str) -> None:
        for entry in steps:
            if entry.get("state") == "running":
                entry["state"] = "failed" if state == "failed" else "interrupted"
        try:
            self.runs.update(run_id, state=state, error=error, steps=steps, **totals(steps))
        except ContentmillError:
            log.exception("studio run %s ended %s and could not be recorded", run_id, state)
