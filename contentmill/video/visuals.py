"""The visuals step: a picture behind every scene, chosen from what the scene says.

With an image model (``--image-model``, CONTENTMILL_IMAGE_MODEL) each scene's picture is made through the gateway
from a prompt built of the scene's narration and the video's topic: admitted, priced per image, cached and
written to the ledger like any call. Without one, the scene gets no picture and the render draws its gradient.

Each scene's picture is stored at its own address (prompt, model, size, quality), so a rerun after a failure
pays only for the pictures still missing, and ``--edit-scene`` makes anew only the pictures of the scenes it
changed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from contentmill.errors import MalformedResponse
from contentmill.gateway import Gateway, Generation
from contentmill.providers.base import ImageRequest
from contentmill.storage import ObjectStore
from contentmill.video.progress import StepEvent, announce
from contentmill.video.records import StepReport, digest, every_one
from contentmill.video.request import VideoRequest
from contentmill.video.script import ScriptScene
from contentmill.video.writing import ScriptResult

VISUALS_VERSION = 1
REMOTE_CONCURRENCY = 4
PROMPT_CHARS = 900  # the scene's words in a prompt, cut at this length (vendors take 1,000 to 32,000)
# The size each model makes closest to the frame, portrait and landscape, and the quality the catalog prices.
_SIZES = {"dall-e-3": ("1024x1792", "1792x1024")}
_DEFAULT_SIZES = ("1024x1536", "1536x1024")  # gpt-image-1 and most OpenAI-compatible image APIs
_QUALITIES = {"gpt-image-1": "medium", "dall-e-3": "standard"}
_PROMPT = {
    "en": "An illustration for one scene of a short video about {topic}. The scene says: \"{words}\" "
          "Vivid, cinematic, one clear subject; no text, letters or captions in the picture.",
    "zh": "为一部关于「{topic}」的短视频的一个场景画一幅插图。这个场景说：“{words}” "
          "画面生动、有电影感、主体清楚；画面里不要有任何文字或字幕。",
}


class Visual(BaseModel):
    """One scene's picture: where it is stored, what made it and what it cost."""

    model_config = ConfigDict(frozen=True)

    key: str
    digest: str
    kind: Literal["image"]
    source: str  # the model that made it
    prompt: str
    cost_usd: float = 0.0


class VisualsResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    digest: str
    visuals: tuple[Visual, ...]  # one per scene, in order; empty: no pictures (the slides' gradients)
    report: StepReport


def image_request(request: VideoRequest, scene: ScriptScene) -> ImageRequest:
    """What a scene's picture is asked for: its words in the video's language, at the frame's orientation."""
    model = (request.image_model or "").partition(":")[2]
    portrait, landscape = _SIZES.get(model, _DEFAULT_SIZES)
    words = scene.narration if len(scene.narration) <= PROMPT_CHARS else scene.narration[:PROMPT_CHARS] + "…"
    prompt = _PROMPT[request.language].format(topic=request.topic, words=words)
    return ImageRequest(prompt, size=portrait if request.orientation == "vertical" else landscape,
                        quality=_QUALITIES.get(model))


def visual_digest(request: VideoRequest, asked: ImageRequest) -> str:
    inputs = {"model": request.image_model, "prompt": asked.prompt, "size": asked.size, "quality": asked.quality}
    return digest("image", VISUALS_VERSION, inputs)


def _load(store: ObjectStore, base: str) -> Visual | None:
    """A picture stored earlier, if both its PNG and its record (written after the PNG) are there."""
    record = store.get_json(f"{base}.json")
    if not isinstance(record, dict) or not store.exists(f"{base}.png"):
        return None
    try:
        return Visual.model_validate(record)
    except ValidationError:
        return None


async def _picture(request: VideoRequest, scene: ScriptScene, gateway: Gateway, store: ObjectStore,
                   limit: asyncio.Semaphore, made: list[Generation]) -> Visual:
    asked = image_request(request, scene)
    found = visual_digest(request, asked)
    base = f"steps/visual/{found}"
    stored = await asyncio.to_thread(_load, store, base)
    if stored is not None:
        return stored
    model = request.image_model or ""
    async with limit:
        tags = {**request.tags, "job": "creator-video", "step": "visuals"}
        generation = await gateway.image(asked, model=model, tags=tags)
    made.append(generation)
    if not generation.images:
        raise MalformedResponse("the image model answered without an image", model=model)
    visual = Visual(key=f"{base}.png", digest=found, kind="image", source=model, prompt=asked.prompt,
                    cost_usd=generation.cost_usd)
    await asyncio.to_thread(store.put, visual.key, generation.images[0], "image/png")
    await asyncio.to_thread(store.put_json, f"{base}.json", visual.model_dump(mode="json"))
    return visual


async def _pictures(request: VideoRequest, script: ScriptResult, gateway: Gateway, store: ObjectStore,
                    made: list[Generation]) -> list[Visual]:
    """Every scene's picture, each stored as soon as it is made: one failure keeps the others for a rerun."""
    limit = asyncio.Semaphore(REMOTE_CONCURRENCY)
    return await every_one(_picture(request, scene, gateway, store, limit, made) for scene in script.script.scenes)


def _stored(store: ObjectStore, key: str, found: str) -> VisualsResult | None:
    record = store.get_json(key)
    if not isinstance(record, dict):
        return None
    try:
        return VisualsResult(key=key, digest=found, visuals=tuple(Visual.model_validate(v) for v in record["visuals"]),
                             report=StepReport.model_validate(record["report"]))
    except (KeyError, TypeError, ValidationError):
        return None


def visuals_digest(request: VideoRequest, script: ScriptResult) -> str:
    """The pictures of all scenes: each scene's address, or the offline kind when no image model is set."""
    if request.image_model is None:
        return digest("visuals", VISUALS_VERSION, {"kind": "none", "scenes": len(script.script.scenes)})
    scenes = [visual_digest(request, image_request(request, scene)) for scene in script.script.scenes]
    return digest("visuals", VISUALS_VERSION, {"kind": "image", "scenes": scenes})


async def visuals_step(request: VideoRequest, script: ScriptResult, gateway: Gateway,
                       store: ObjectStore) -> VisualsResult:
    """A picture for every scene (stored pictures reused), or none without an image model."""
    started = time.perf_counter()
    model = request.image_model
    announce(StepEvent("visuals", "start", f"pictures by {model}" if model else "no image model: gradients"))
    found = visuals_digest(request, script)
    key = f"steps/visuals/{found}.json"
    stored = await asyncio.to_thread(_stored, store, key, found)
    if stored is not None:
        result = stored.model_copy(update={"report": stored.report.reused(time.perf_counter() - started)})
    else:
        made: list[Generation] = []
        visuals = await _pictures(request, script, gateway, store, made) if model else []
        reused = sum(v.cost_usd for v in visuals) - sum(gen.cost_usd for gen in made)
        report = StepReport.from_generations("visuals", model, made, reused_cost_usd=reused,
                                             reused=len(made) < len(visuals),
                                             seconds=time.perf_counter() - started)
        result = VisualsResult(key=key, digest=found, visuals=tuple(visuals), report=report)
        record = {"visuals": [v.model_dump(mode="json") for v in visuals], "report": report.model_dump(mode="json")}
        await asyncio.to_thread(store.put_json, key, record)
    announce(StepEvent("visuals", "done", f"{len(result.visuals)} pictures", result.report))
    return result
