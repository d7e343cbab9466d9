"""The visuals step: a picture behind every scene, chosen from what the scene says.

With an image model (``--image-model``, CONTENTMILL_IMAGE_MODEL) each scene's picture is made through the gateway
from a prompt built of the scene's narration and the video's topic: admitted, priced per image, cached and
written to the ledger like any call. With ``footage`` each scene gets a stock clip found by its caption on
Pexels (``providers/pexels.py``: free, so no gateway call and no ledger row; the step counts its searches).
Without either, offline and free, each scene gets an illustration around the icon that means most nearly what it
says (``illustrate.py``).

Each scene's picture is stored at its own address (prompt, model, size, quality), so a rerun after a failure
pays only for the pictures still missing, and ``--edit-scene`` makes anew only the pictures of the scenes it
changed.
"""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from contentmill.errors import ConfigError, MalformedResponse
from contentmill.gateway import Gateway, Generation
from contentmill.media import Font, find_font
from contentmill.media.icons import icon_set_version
from contentmill.providers.pexels import PexelsClient
from contentmill.requests import ImageRequest
from contentmill.settings import Settings
from contentmill.storage import ObjectStore
from contentmill.video.illustrate import illustration, keyword, pick_icons, scene_palette
from contentmill.video.progress import StepEvent, announce
from contentmill.video.records import StepReport, digest, every_one
from contentmill.video.request import VideoRequest
from contentmill.video.script import ScriptScene
from contentmill.video.writing import ScriptResult

VISUALS_VERSION = 1
ILLUSTRATION_VERSION = 2  # how an illustration is drawn (illustrate.py); a new one draws stored scenes again
OFFLINE = "offline:icons"  # what a step report names for the offline illustrations (Font Awesome + MiniLM)
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
    kind: Literal["image", "icon", "footage"]
    source: str  # the model that made it, the icon it shows (fontawesome:NAME), or the footage's page
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


def _load(store: ObjectStore, base: str, suffix: str = "png") -> Visual | None:
    """A picture (or clip) stored earlier, if both its file and its record (written after it) are there."""
    record = store.get_json(f"{base}.json")
    if not isinstance(record, dict) or not store.exists(f"{base}.{suffix}"):
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


def scene_words(request: VideoRequest, scene: ScriptScene) -> str:
    """What an offline scene's icon is matched with."""
    return f"{request.topic}. {scene.on_screen_text}. {scene.narration}"


def illustration_digest(request: VideoRequest, scene: ScriptScene, number: int, font: Font) -> str:
    inputs = {"words": scene_words(request, scene), "caption": scene.on_screen_text, "size": list(request.size),
              "palette": number, "icons": icon_set_version(), "font": [str(font.path), font.index],
              "drawing": ILLUSTRATION_VERSION}
    return digest("illustration", VISUALS_VERSION, inputs)


def _font(request: VideoRequest, script: ScriptResult, font_file: Path | None) -> Font:
    captions = " ".join(scene.on_screen_text for scene in script.script.scenes)
    return find_font(captions, font_file=font_file, language=request.language)


def _illustrations(request: VideoRequest, script: ScriptResult, store: ObjectStore, data_dir: Path,
                   font_file: Path | None) -> list[Visual]:
    """Each scene's stored illustration, the missing ones drawn around icons no other scene shows."""
    scenes = script.script.scenes
    font = _font(request, script, font_file)
    bases = [f"steps/visual/{illustration_digest(request, s, n, font)}" for n, s in enumerate(scenes)]
    found = [_load(store, base) for base in bases]
    missing = [n for n, visual in enumerate(found) if visual is None]
    if missing:
        taken = [v.source.removeprefix("fontawesome:") for v in found if v is not None]
        icons = pick_icons([scene_words(request, scenes[n]) for n in missing], data_dir, taken)
        for n, icon in zip(missing, icons, strict=True):
            word = keyword(scenes[n].narration, scenes[n].on_screen_text, request.topic)
            picture = illustration(icon, font.drawable(word), request.size, scene_palette(n), font)
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG", compress_level=1)
            visual = Visual(key=f"{bases[n]}.png", digest=bases[n].rsplit("/", 1)[1], kind="icon",
                            source=f"fontawesome:{icon.name}", prompt=scene_words(request, scenes[n]))
            store.put(visual.key, buffer.getvalue(), "image/png")
            store.put_json(f"{bases[n]}.json", visual.model_dump(mode="json"))
            found[n] = visual
    return [visual for visual in found if visual is not None]


def footage_digest(request: VideoRequest, scene: ScriptScene, base_url: str) -> str:
    inputs = {"query": scene.on_screen_text, "topic": request.topic, "orientation": request.orientation,
              "short_side": request.resolution, "api": base_url}
    return digest("footage", VISUALS_VERSION, inputs)


async def _footage(request: VideoRequest, script: ScriptResult, settings: Settings, store: ObjectStore
                   ) -> tuple[list[Visual], int]:
    """Each scene's clip (stored ones reused, the others searched by caption, then by topic) and the number of
    searches made; no clip twice in a video while the searches offer another."""
    key = settings.pexels_api_key
    if key is None or not key.get_secret_value():
        raise ConfigError("footage needs a Pexels API key: set CONTENTMILL_PEXELS_API_KEY (free at "
                          "https://www.pexels.com/api/), or leave --footage off for offline illustrations")
    orientation: Literal["portrait", "landscape"] = "portrait" if request.orientation == "vertical" else "landscape"
    client = PexelsClient(key, settings.pexels_base_url, timeout=settings.request_timeout_s)
    visuals: list[Visual] = []
    searches = 0
    try:
        for scene in script.script.scenes:
            found = footage_digest(request, scene, settings.pexels_base_url)
            base = f"steps/footage/{found}"
            stored = await asyncio.to_thread(_load, store, base, "mp4")
            if stored is not None:
                visuals.append(stored)
                continue
            used = {v.source for v in visuals}
            clip = None
            for query in dict.fromkeys((scene.on_screen_text, request.topic)):
                searches += 1
                hits = await client.search(query, orientation, request.resolution)
                clip = next((hit for hit in hits if hit.page not in used), hits[0] if hits else None)
                if clip is not None:
                    break
            if clip is None:
                raise MalformedResponse(f"no footage found for {scene.on_screen_text!r} nor {request.topic!r}",
                                        provider="pexels")
            visual = Visual(key=f"{base}.mp4", digest=found, kind="footage", source=clip.page, prompt=query)
            await asyncio.to_thread(store.put, visual.key, await client.download(clip), "video/mp4")
            await asyncio.to_thread(store.put_json, f"{base}.json", visual.model_dump(mode="json"))
            visuals.append(visual)
    finally:
        await client.aclose()
    return visuals, searches


def visuals_digest(request: VideoRequest, script: ScriptResult, font_file: Path | None = None,
                   footage_api: str = "") -> str:
    """The pictures of all scenes: each scene's address."""
    scenes = script.script.scenes
    if request.footage:
        parts = [footage_digest(request, scene, footage_api) for scene in scenes]
        return digest("visuals", VISUALS_VERSION, {"kind": "footage", "scenes": parts})
    if request.image_model is None:
        font = _font(request, script, font_file)
        parts = [illustration_digest(request, scene, n, font) for n, scene in enumerate(scenes)]
        return digest("visuals", VISUALS_VERSION, {"kind": "icon", "scenes": parts})
    parts = [visual_digest(request, image_request(request, scene)) for scene in scenes]
    return digest("visuals", VISUALS_VERSION, {"kind": "image", "scenes": parts})


async def visuals_step(request: VideoRequest, script: ScriptResult, gateway: Gateway,
                       store: ObjectStore) -> VisualsResult:
    """A picture for every scene (stored pictures reused): the image model's, or offline illustrations."""
    started = time.perf_counter()
    model = request.image_model
    settings = gateway.settings
    source = "footage from Pexels" if request.footage else f"pictures by {model}" if model else "illustrations"
    announce(StepEvent("visuals", "start", source))
    found = await asyncio.to_thread(visuals_digest, request, script, settings.font_file, settings.pexels_base_url)
    key = f"steps/visuals/{found}.json"
    stored = await asyncio.to_thread(_stored, store, key, found)
    if stored is not None:
        result = stored.model_copy(update={"report": stored.report.reused(time.perf_counter() - started)})
    else:
        made: list[Generation] = []
        searches = 0
        if request.footage:
            visuals, searches = await _footage(request, script, settings, store)
        elif model:
            visuals = await _pictures(request, script, gateway, store, made)
        else:
            visuals = await asyncio.to_thread(_illustrations, request, script, store, settings.data_dir,
                                              settings.font_file)
        reused = sum(v.cost_usd for v in visuals) - sum(gen.cost_usd for gen in made)
        report = StepReport.from_generations("visuals", "pexels" if request.footage else model or OFFLINE, made,
                                             reused_cost_usd=reused, reused=bool(model) and len(made) < len(visuals),
                                             seconds=time.perf_counter() - started)
        if searches:
            report = report.model_copy(update={"calls": searches})
        result = VisualsResult(key=key, digest=found, visuals=tuple(visuals), report=report)
        record = {"visuals": [v.model_dump(mode="json") for v in visuals], "report": report.model_dump(mode="json")}
        await asyncio.to_thread(store.put_json, key, record)
    announce(StepEvent("visuals", "done", f"{len(result.visuals)} pictures", result.report))
    return result
