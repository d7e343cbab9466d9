"""The creator video as library code: script, narration, subtitles, render and publish steps.

Each step stores its result at the address of its inputs (``contentmill.video.records``), so the Prefect
flow in ``contentmill.flows.creator_video`` and :func:`make_video` both resume where a run stopped.
"""

from contentmill.video.pipeline import VideoResult, make_video
from contentmill.video.request import VideoRequest
from contentmill.video.script import Script, ScriptScene

__all__ = ["Script", "ScriptScene", "VideoRequest", "VideoResult", "make_video"]
