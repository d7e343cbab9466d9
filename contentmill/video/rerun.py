"""A rerun answered from the store: the finished video of the same request, without Prefect or any model.

Each finished run leaves a small record at the address of the request as asked (every field but the cost tags,
the models resolved from the settings, the font file, and the versions of the steps), pointing at its published
folder. The CLI reads it before it starts a Prefect API: a rerun then takes about a second instead of the 20 s a
temporary API takes to start. A record whose folder is gone (deleted to make the video again) is ignored.

A topic that means the same as an earlier one (the knowledge graph's dedupe, as the flow's similar step decides
it) is answered the same way from the earlier request's record, and recorded under its own request for next time.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import ValidationError

from contentmill.errors import ContentmillError
from contentmill.settings import Settings
from contentmill.storage import ObjectStore, open_store
from contentmill.video import prompts
from contentmill.video.narration import NARRATION_VERSION
from contentmill.video.pipeline import VideoResult
from contentmill.video.records import digest
from contentmill.video.render import RENDER_VERSION, file_identity
from contentmill.video.request import VideoRequest
from contentmill.video.visuals import VISUALS_VERSION
from contentmill.video.writing import SCRIPT_VERSION

log = logging.getLogger("contentmill.video")
RERUN_VERSION = 1


def request_key(request: VideoRequest, settings: Settings) -> str:
    """Where the finished video of ``request`` (models resolved) is recorded."""
    font = settings.font_file
    inputs = {
        "request": {**request.model_dump(mode="json", exclude={"tags", "reuse_similar", "review", "captions", "music"}),
                    **request.finish},
        "font": [str(font), font.stat().st_mtime_ns] if font is not None and font.is_file() else None,
        "versions": [SCRIPT_VERSION, NARRATION_VERSION, VISUALS_VERSION, RENDER_VERSION, prompts.PROMPT_VERSION],
    }
    if request.music:  # a changed track is another video
        inputs["music_file"] = file_identity(Path(request.music))
    return f"steps/requests/{digest('request', RERUN_VERSION, inputs)}.json"


def remember(settings: Settings, asked: VideoRequest, result: VideoResult) -> None:
    """Record the finished video under the request as asked (a similar topic's video serves it next time too).
    A reviewed run is not recorded (its script is the reviewer's); a record that cannot be written is a warning."""
    if asked.review:
        return
    try:
        store = open_store(settings)
        try:
            store.put_json(request_key(asked, settings), result.model_dump(mode="json"))
        finally:
            store.close()
    except (ContentmillError, OSError) as exc:
        log.warning("the video is made, but a rerun will start Prefect to find it: %s", exc)


def recall_similar(store: ObjectStore, settings: Settings, request: VideoRequest) -> VideoResult | None:
    """The stored video of an earlier topic that means the same as ``request``'s (models resolved), with the note
    the flow gives it (``similar_to``), the decision kept in the graph and the answer recorded under ``request``;
    None when no earlier video serves or its record is not in the store, and then nothing is recorded: the flow
    decides again."""
    if request.review:
        return None
    from contentmill.video.lineage import resolve_similar  # the knowledge graph: only when no record answers

    earlier, note = resolve_similar(settings, request, record=False)
    stored = recall(store, settings, earlier) if note is not None else None
    if stored is None or resolve_similar(settings, request)[1] is None:  # the second look keeps the decision
        return None
    result = stored.model_copy(update={"similar_to": note})
    store.put_json(request_key(request, settings), result.model_dump(mode="json"))
    return result


def recall(store: ObjectStore, settings: Settings, request: VideoRequest) -> VideoResult | None:
    """The stored video of ``request`` (models resolved), every step reused and nothing paid; None if not made."""
    record = store.get_json(request_key(request, settings))
    if not isinstance(record, dict):
        return None
    try:
        earlier = VideoResult.model_validate(record)
    except ValidationError:
        return None
    folder = earlier.folder
    if not store.exists(f"{folder}manifest.json"):
        return None
    steps = {name: report.reused() for name, report in earlier.steps.items()}
    log.info("the video of this request is stored in %s: every step reused", folder)
    return earlier.model_copy(update={
        "steps": steps,
        "cost_usd": 0.0,
        "saved_usd": round(sum(report.saved_usd for report in steps.values()), 10),
        "video": store.url(f"{folder}video.mp4"),  # presigned URLs are made anew, as they expire
        "srt": store.url(f"{folder}subtitles.srt"),
        "script": store.url(f"{folder}script.json"),
        "thumbnail": store.url(f"{folder}thumbnail.jpg") if earlier.thumbnail else None,
        "audio": tuple(store.url(f"{folder}audio/scene-{n:02d}.wav") for n in range(1, len(earlier.audio) + 1)),
        "store": store.location,
        "flow_run_id": None,
    })
