"""The creator video flow: topic -> script -> narration -> visuals -> subtitles -> render -> publish.

Its parameters are the fields of :class:`~contentmill.video.request.VideoRequest`, typed with the same
annotated types, so the Prefect UI shows a typed form and ``prefect deployment run ... -p topic=...`` works.
Each step is one task; results are stored at content addresses, so a rerun with the same parameters makes
no model call and renders nothing, and a rerun after a failure resumes after the last good step.

The annotations are real objects, not strings (no ``from __future__ import annotations``): a served deployment
(``creator_video.serve()``) pickles this module by value into each flow run's process, where a string such as
"Topic" no longer names anything and Prefect cannot check the parameters.
"""

import asyncio

from prefect import flow, get_run_logger
from prefect import tags as prefect_tags
from prefect.artifacts import (
    acreate_link_artifact,
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.runtime import flow_run

from contentmill.settings import load_settings
from contentmill.tasks.review import review_script
from contentmill.tasks.video import (
    lineage_task,
    narration_task,
    publish_task,
    render_task,
    script_task,
    similar_task,
    subtitles_task,
    visuals_task,
)
from contentmill.video.pipeline import VideoResult, summarize
from contentmill.video.request import (
    DEFAULT_STYLE,
    Captions,
    Footage,
    Fps,
    ImageModelName,
    Language,
    ModelName,
    Music,
    Orientation,
    OwnScript,
    Resolution,
    ReuseSimilar,
    Review,
    SceneEdits,
    Seconds,
    Source,
    Style,
    Tags,
    Topic,
    VideoRequest,
    Voice,
)
from contentmill.video.rerun import remember
from contentmill.video.summary import cost_rows, failure_markdown, result_links, summary_markdown

ARTIFACT_KEY = "creator-video"


@flow(name="creator-video", persist_result=False, log_prints=False)
async def creator_video(
    topic: Topic,
    language: Language = "en",
    seconds: Seconds = 30,
    style: Style = DEFAULT_STYLE,
    voice: Voice = "default",
    text_model: ModelName = None,
    speech_model: ModelName = None,
    orientation: Orientation = "vertical",
    resolution: Resolution = 1080,
    fps: Fps = 30,
    tags: Tags | None = None,
    scene_edits: SceneEdits | None = None,
    reuse_similar: ReuseSimilar = True,
    own_script: OwnScript = None,
    source: Source = None,
    review: Review = False,
    image_model: ImageModelName = None,
    footage: Footage = False,
    captions: Captions = "plain",
    music: Music = None,
) -> VideoResult:
    """A narrated short video with burned-in subtitles about a topic, its script, audio and cost.

    Args:
        topic: What the video is about.
        language: en or zh: script, narration and subtitles.
        seconds: Target length in seconds.
        style: Tone of the script, e.g. "playful" (chat models follow it).
        voice: A voice of the speech engine; "default" picks one for the language.
        text_model: provider:model for the script; empty uses CONTENTMILL_TEXT_MODEL.
        speech_model: provider:model for the narration; empty uses CONTENTMILL_SPEECH_MODEL.
        orientation: vertical (1080x1920, for phones) or landscape (1920x1080).
        resolution: The short side in pixels (480, 720 or 1080).
        fps: Frames per second.
        tags: Cost tags such as {"team": "...", "project": "..."}.
        scene_edits: Scene number (from 1) -> new narration, to change scenes of a finished video: only those
            scenes are spoken again and the video rendered again; everything else is reused.
        reuse_similar: Serve a topic that means the same as an earlier one (same settings) from its stored video.
        own_script: Your own narration, one paragraph per scene (blank lines between); an optional first line
            "# Title". No text model is called.
        source: Notes (text or markdown) the script takes its facts from: the local model picks their sentences
            most about the topic; a chat model may use nothing else.
        review: Pause after the script until it is approved or edited in the UI (Resume shows it as a form);
            nothing is spoken or rendered before.
        image_model: provider:model making each scene's picture (e.g. openai:gpt-image-1); empty uses
            CONTENTMILL_IMAGE_MODEL, and without it each scene gets an offline illustration.
        footage: Stock footage found by each scene's words (needs CONTENTMILL_PEXELS_API_KEY).
        captions: plain subtitles, or karaoke: each word lights up as it is said.
        music: Path of an audio file (on the machine that renders) mixed under the narration, ducked while it
            speaks, looped or cut to the video's length and faded out at the end.
    """
    request = VideoRequest.checked(
        topic=topic,
        language=language,
        seconds=seconds,
        style=style,
        voice=voice,
        text_model=text_model,
        speech_model=speech_model,
        orientation=orientation,
        resolution=resolution,
        fps=fps,
        tags=tags or {},
        scene_edits=scene_edits or {},
        reuse_similar=reuse_similar,
        own_script=own_script,
        source=source,
        review=review,
        image_model=image_model,
        footage=footage,
        captions=captions,
        music=music,
    ).with_models(load_settings())
    return await _run(request)


async def _run(request: VideoRequest) -> VideoResult:
    logger = get_run_logger()
    progress = await acreate_progress_artifact(0.0, description=f"creator video: {request.topic}")
    done: list[str] = []
    step = "similar"
    asked = request
    try:
        with prefect_tags(*(f"{key}:{value}" for key, value in request.tags.items())):
            request, similar_to = await similar_task(request)
            step = "script"
            script = await script_task(request)
            done.append(step)
            if request.review:
                step = "review"
                script = await review_script(script)
            await aupdate_progress_artifact(progress, 20.0)
            step = "narration"
            narration = await narration_task(request, script)
            done.append(step)
            await aupdate_progress_artifact(progress, 40.0)
            step = "visuals"
            visuals = await visuals_task(request, script)
            done.append(step)
            step = "subtitles"
            subtitles = await subtitles_task(narration)
            done.append(step)
            await aupdate_progress_artifact(progress, 50.0)
            step = "render"
            render = await render_task(request, script, narration, subtitles, visuals)
            done.append(step)
            await aupdate_progress_artifact(progress, 90.0)
            step = "publish"
            published = await publish_task(request, script, narration, subtitles, render)
            done.append(step)
            step = "lineage"
            lineage = await lineage_task(request, script, narration, render, published)
            await aupdate_progress_artifact(progress, 100.0)
    except Exception as exc:
        logger.error(
            "the %s step failed: %s. Finished and stored: %s; run again with the same parameters to resume.",
            step,
            exc,
            ", ".join(done) or "none",
        )
        await acreate_markdown_artifact(
            failure_markdown(request.topic, step, exc, done), key=ARTIFACT_KEY + "-summary"
        )
        raise
    result = summarize(request, script, narration, subtitles, render, published, str(flow_run.id), lineage,
                       similar_to, visuals)
    await asyncio.to_thread(remember, load_settings(), asked, result)
    await _artifacts(result)
    return result


async def _artifacts(result: VideoResult) -> None:
    """A link to the video, the cost table and a markdown summary, each under a stable key. The links go through
    the server at CONTENTMILL_PUBLIC_URL when one is set (a browser opens them; it refuses file://)."""
    public_url = load_settings().public_url
    await acreate_link_artifact(
        result_links(result, public_url)["video"],
        link_text=f"{result.title} ({result.duration_s:.1f} s)",
        key=ARTIFACT_KEY,
        description="The finished video.",
    )
    await acreate_table_artifact(
        cost_rows(result),
        key=ARTIFACT_KEY + "-costs",
        description=f"Model, usage and cost of each step; this run paid {result.cost_usd:.6f} USD.",
    )
    await acreate_markdown_artifact(summary_markdown(result, public_url), key=ARTIFACT_KEY + "-summary")
