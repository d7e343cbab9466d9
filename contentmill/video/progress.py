"""Step progress for whoever is watching (the CLI's live display), without threading a callback through.

Steps call :func:`announce`; a caller that wants to show progress wraps the run in :func:`listening`. The
listener travels in a context variable, which Prefect copies into the task runs of an in-process flow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from contentmill.video.records import StepReport


@dataclass(frozen=True, slots=True)
class StepEvent:
    step: str
    phase: Literal["start", "done"]
    detail: str = ""
    report: StepReport | None = None


Listener = Callable[[StepEvent], None]
_LISTENER: ContextVar[Listener | None] = ContextVar("contentmill_video_listener", default=None)


def announce(event: StepEvent) -> None:
    """Tell the current listener, if any, about a step starting or finishing."""
    listener = _LISTENER.get()
    if listener is not None:
        listener(event)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send the step events of everything run inside the block to ``listener``."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)
