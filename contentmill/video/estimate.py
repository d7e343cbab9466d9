"""What a video will cost before anything is paid (``contentmill video ... --dry-run``): no model is called.

Each paid step is priced from the catalog: the script by the tokens of the very prompt the step sends (counted
with the model's tokenizer, ``contentmill.metering``) and the narration's expected length in tokens, the speech
by the characters of the script (exact for the creator's own script or a stored one, else the length asked
for), pictures per image (one a scene). Steps and scenes whose results are stored already cost nothing.
``up to`` is the most the step may spend: every attempt the step allows, each answering at its token limit.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict

from contentmill.catalog import Catalog, ModelInfo
from contentmill.metering import Usage, count_message_tokens
from contentmill.storage import ObjectStore
from contentmill.video import prompts
from contentmill.video.narration import clip_digest
from contentmill.video.own import parse_own_script
from contentmill.video.request import VideoRequest
from contentmill.video.script import Script
from contentmill.video.visuals import image_request, visual_digest
from contentmill.video.writing import JSON_ATTEMPTS, SCENE_ATTEMPTS, script_digest

TOKENS_PER_WORD = {"en": 1.35, "zh": 1.0}  # output tokens per spoken word (per character in Chinese)
TOKENS_PER_SCENE = 25  # the JSON around each scene's narration, and its caption
CHARACTERS_PER_WORD = 6.0  # an English word and the space after it, as speech APIs bill characters


class EstimateRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    step: str
    model: str
    calls: int
    usage: str
    cost_usd: float
    up_to_usd: float
    note: str = ""


class Estimate(BaseModel):
    """The expected cost of each step and in all; ``as_json`` is the CLI's ``--dry-run --json`` answer."""

    model_config = ConfigDict(frozen=True)

    topic: str
    rows: tuple[EstimateRow, ...]

    @property
    def cost_usd(self) -> float:
        return round(sum(row.cost_usd for row in self.rows), 10)

    @property
    def up_to_usd(self) -> float:
        return round(sum(row.up_to_usd for row in self.rows), 10)

    def as_json(self) -> dict[str, Any]:
        return {"dry_run": True, "topic": self.topic, "steps": [row.model_dump(mode="json") for row in self.rows],
                "cost_usd": self.cost_usd, "up_to_usd": self.up_to_usd}


def _tokens(info: ModelInfo, messages: list[dict[str, str]]) -> int:
    encoding = info.tokenizer if info.tokenizer.endswith("_base") else "cl100k_base"
    return count_message_tokens(messages, encoding)


def _stored_script(request: VideoRequest, store: ObjectStore | None) -> Script | None:
    if request.own_script is not None:
        return parse_own_script(request.own_script, request.language, prompts.script_title(request.topic,
                                                                                           request.language))
    record = store.get_json(f"steps/script/{script_digest(request)}.json") if store is not None else None
    if isinstance(record, dict) and "script" in record:
        return Script.model_validate(record["script"])
    return None


def _script_row(request: VideoRequest, catalog: Catalog, script: Script | None) -> EstimateRow:
    info = catalog.get(request.text)
    if request.own_script is not None:
        return EstimateRow(step="script", model="-", calls=0, usage="-", cost_usd=0, up_to_usd=0,
                           note="your own script: no text model call")
    if script is not None:
        return EstimateRow(step="script", model=request.text, calls=0, usage="-", cost_usd=0, up_to_usd=0,
                           note="stored: reused")
    local = catalog.provider(info.provider).kind == "local"
    if local:
        sentences = prompts.spoken_budget(request.seconds, request.language, request.speech) / (
            prompts.WORDS_PER_SENTENCE[request.language])
        calls = 0 if request.source is not None else max(prompts.scene_count(request.seconds), math.ceil(sentences))
        note = "sentences taken from the source" if request.source is not None else "runs on this machine"
        return EstimateRow(step="script", model=request.text, calls=calls, usage="-", cost_usd=0, up_to_usd=0,
                           note=note)
    ask = prompts.json_script_request(request.topic, request.language, request.seconds, request.style,
                                      source=request.source, speech_model=request.speech)
    messages = [{"role": message.role, "content": message.content} for message in ask.messages]
    prompt = _tokens(info, messages)
    budget = prompts.spoken_budget(request.seconds, request.language, request.speech)
    answer = math.ceil(budget * TOKENS_PER_WORD[request.language]
                       + TOKENS_PER_SCENE * prompts.scene_count(request.seconds))
    cost = catalog.cost(request.text, Usage(input_tokens=prompt, output_tokens=min(answer, ask.max_tokens)))
    # a retry resends the prompt with the first answer; without a source the worst case then writes scene by
    # scene, every scene's every attempt answering at its limit (with a source, the notes' sentences are free)
    worst = Usage(input_tokens=JSON_ATTEMPTS * prompt + ask.max_tokens, output_tokens=JSON_ATTEMPTS * ask.max_tokens)
    up_to = catalog.cost(request.text, worst)
    if request.source is None:
        angles = prompts.angles_for(request.seconds, request.language)
        words = max(12, budget // len(angles) + 5)
        for angle in angles:
            scene = prompts.chat_scene_request(request.topic, angle, request.language, request.style, words)
            tokens = _tokens(info, [{"role": m.role, "content": m.content} for m in scene.messages])
            up_to += SCENE_ATTEMPTS * catalog.cost(request.text, Usage(input_tokens=tokens,
                                                                        output_tokens=scene.max_tokens))
    return EstimateRow(step="script", model=request.text, calls=1, usage=f"~{prompt} in + {answer} out tokens",
                       cost_usd=round(cost, 10), up_to_usd=round(up_to, 10),
                       note="its numbers and names checked against the source" if request.source else "")


def _speech_row(request: VideoRequest, catalog: Catalog, script: Script | None,
                store: ObjectStore | None) -> EstimateRow:
    if script is not None:
        texts = [scene.narration for scene in script.scenes]
        missing = [text for text in texts
                   if store is None or not store.exists(f"steps/speech/{clip_digest(text, request)}.json")]
        characters, calls = sum(len(text) for text in missing), len(missing)
        seconds = request.seconds * characters / max(1, sum(len(text) for text in texts))
        note = "" if calls == len(texts) else f"{len(texts) - calls} of {len(texts)} clips stored"
    else:
        budget = prompts.spoken_budget(request.seconds, request.language, request.speech)
        characters = budget if request.language == "zh" else round(budget * CHARACTERS_PER_WORD)
        calls, seconds, note = prompts.scene_count(request.seconds), float(request.seconds), "from the length asked"
    cost = round(catalog.cost(request.speech, Usage(characters=characters, seconds=seconds)), 10)
    return EstimateRow(step="narration", model=request.speech, calls=calls, usage=f"~{characters} chars",
                       cost_usd=cost, up_to_usd=cost, note=note)


def _visuals_row(request: VideoRequest, catalog: Catalog, script: Script | None,
                 store: ObjectStore | None) -> EstimateRow:
    if request.footage:  # searched on Pexels for every scene, before any image model
        calls = len(script.scenes) if script is not None else prompts.scene_count(request.seconds)
        return EstimateRow(step="visuals", model="pexels", calls=calls, usage=f"{calls} searches", cost_usd=0,
                           up_to_usd=0, note="stock footage: free with a Pexels API key")
    if not request.image_model:
        return EstimateRow(step="visuals", model="offline:icons", calls=0, usage="-", cost_usd=0, up_to_usd=0,
                           note="an illustration per scene, made on this machine")
    if script is not None:
        bases = [f"steps/visual/{visual_digest(request, image_request(request, scene))}" for scene in script.scenes]
        calls = sum(1 for base in bases if store is None or not store.exists(f"{base}.json"))
        note = "" if calls == len(bases) else f"{len(bases) - calls} of {len(bases)} pictures stored"
    else:
        calls, note = prompts.scene_count(request.seconds), "one picture a scene"
    cost = round(catalog.cost(request.image_model, Usage(images=calls)), 10)
    return EstimateRow(step="visuals", model=request.image_model, calls=calls, usage=f"{calls} images",
                       cost_usd=cost, up_to_usd=cost, note=note)


def estimate_video(request: VideoRequest, catalog: Catalog, store: ObjectStore | None = None) -> Estimate:
    """The cost of making ``request`` (models resolved) at the catalog's prices; reads the store, calls nothing."""
    script = _stored_script(request, store)
    rows = [
        _script_row(request, catalog, script),
        _speech_row(request, catalog, script, store),
        _visuals_row(request, catalog, script, store),
        EstimateRow(step="render", model="ffmpeg", calls=0, usage="-", cost_usd=0, up_to_usd=0,
                    note="runs on this machine"),
    ]
    return Estimate(topic=request.topic, rows=tuple(rows))
