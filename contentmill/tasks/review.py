"""Review before paying for speech and render: the flow pauses after the script until a person resumes it.

The Prefect UI's Resume button shows :class:`ScriptReview` as a form filled with the script (title, one text box
per scene); what comes back is the script the rest of the flow narrates. An edited script is stored at its own
address (the base script and the change), keeping what writing the base cost; an unchecked ``approved`` stops the
run before anything is spoken.
"""

from __future__ import annotations

import asyncio

from prefect import get_run_logger
from prefect.flow_runs import apause_flow_run
from prefect.input import RunInput
from pydantic import Field

from contentmill.errors import InvalidRequest
from contentmill.settings import load_settings
from contentmill.storage import open_store
from contentmill.video.own import parse_own_script
from contentmill.video.script import Script, clean_text
from contentmill.video.writing import ScriptResult, revised

REVIEW_TIMEOUT_S = 24 * 3600  # a paused run fails after a day without an answer
REVIEW_POLL_S = 2


class ScriptReview(RunInput):
    """The script to approve or edit before it is narrated."""

    title: str = Field(description="The video's title.")
    scenes: list[str] = Field(description="What the voice says in each scene, in order; add or remove scenes here.")
    approved: bool = Field(default=True, description="Untick to stop here: nothing is spoken or rendered.")


def reviewed_script(base: Script, answer: ScriptReview) -> Script | None:
    """The script as the reviewer left it, or None when nothing changed; InvalidRequest when it cannot be used."""
    if not answer.approved:
        raise InvalidRequest("the script was not approved in review: nothing was spoken or rendered")
    narrations = [clean_text(text) for text in answer.scenes if clean_text(text)]
    title = clean_text(answer.title) or base.title
    if title == base.title and narrations == [scene.narration for scene in base.scenes]:
        return None
    text = "\n\n".join([f"# {title}", *narrations])
    script = parse_own_script(text, base.language, base.title)
    kept = {scene.narration: scene for scene in base.scenes}  # an unchanged scene keeps its caption
    return script.model_copy(update={"scenes": tuple(kept.get(s.narration, s) for s in script.scenes)})


async def review_script(script: ScriptResult) -> ScriptResult:
    """Pause the flow run with the script as a form; the approved (maybe edited) script."""
    form = ScriptReview.with_initial_data(
        description=f"Review the script of **{script.script.title}** before it is narrated and rendered.",
        title=script.script.title,
        scenes=[scene.narration for scene in script.script.scenes],
    )
    get_run_logger().info("paused for review of the script: resume the run to approve or edit it")
    answer = await apause_flow_run(wait_for_input=form, timeout=REVIEW_TIMEOUT_S, poll_interval=REVIEW_POLL_S)
    changed = reviewed_script(script.script, answer)
    if changed is None:
        return script
    change = {"review": {"title": changed.title, "scenes": [scene.narration for scene in changed.scenes]}}
    store = open_store(load_settings())
    try:
        return await asyncio.to_thread(revised, script, changed, store, change)
    finally:
        store.close()
