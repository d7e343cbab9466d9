"""The script step: the text model writes the script, and what it wrote is repaired, retried or refused.

A chat model is asked for the whole script as JSON; an answer that cannot be repaired is sent back once with
the reason, and if that fails too the script is written scene by scene instead. A base model (provider kind
``local``) writes scene by scene from the start: the code fixes the structure and each sentence is checked,
then retried with another seed where it is junk. A scene no attempt could write is left out while at least
three remain; otherwise the step fails with MalformedResponse. Malformed output never reaches the script.
The module stays whole: the three ways of writing (JSON, scene by scene, from a source) share the request's
checks and fall back on one another in ``write_script``, and the step around them stores what they wrote.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from contentmill.errors import MalformedResponse
from contentmill.gateway import Gateway, Generation
from contentmill.media.text import is_cjk
from contentmill.requests import EmbeddingRequest, Message, TextRequest
from contentmill.storage import ObjectStore
from contentmill.video import prompts
from contentmill.video.grounding import EMBEDDING_MODEL, extract_script, grounding_problem, spoken_size
from contentmill.video.own import parse_own_script
from contentmill.video.progress import StepEvent, announce
from contentmill.video.records import StepReport, digest
from contentmill.video.request import VideoRequest
from contentmill.video.script import (
    MIN_SCENES,
    Script,
    ScriptScene,
    UnusableText,
    caption_from,
    check_sentence,
    clean_text,
    parse_script,
)

log = logging.getLogger("contentmill.video")
SCRIPT_VERSION = 2
# A base model's English sentence is asked again when its MiniLM similarity to the topic is under OFF_TOPIC or
# about an example's topic instead (similarity to it at least ELSEWHERE and above the topic's: it wrote about bees),
# or when it is REPEATED-similar to an earlier one. MiniLM is an English model: Chinese sentences keep the
# character-pair checks of check_sentence alone.
OFF_TOPIC = 0.12
ELSEWHERE = 0.35
REPEATED = 0.85
FILL, OVERFILL = 0.95, 1.07  # a base model's script: from this share of the spoken budget to this one
FILL_ROUNDS = 3
LENGTH_TOLERANCE = 0.15  # a chat model's script this far from the spoken budget is sent back once
JSON_ATTEMPTS = 2
SCENE_ATTEMPTS = 4
RETRY_TEMPERATURE = 0.8
SCENE_MAX_TOKENS = 80


@dataclass(slots=True)
class Written:
    """A script and every call it took (also the calls whose answers were thrown away)."""

    script: Script
    strategy: str  # "json", "scenes", "source" (extracted from it) or "own" (the creator's)
    generations: list[Generation] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)


class ScriptResult(BaseModel):
    """The script step's result: the script itself (it is small) and where it is stored."""

    model_config = ConfigDict(frozen=True)

    key: str
    digest: str
    script: Script
    strategy: str
    report: StepReport


def script_digest(request: VideoRequest) -> str:
    """Exactly what the script depends on: topic, language, length, style, text model, prompts (not voice)."""
    inputs = {
        "topic": request.topic,
        "language": request.language,
        "seconds": request.seconds,
        "style": request.style,
        "text_model": request.text,
        "prompts": prompts.PROMPT_VERSION,
        "words": prompts.spoken_budget(request.seconds, request.language, request.speech_model),  # the pace
    }
    for name in ("source", "own_script"):  # only when given: the address of a script from the topic is unchanged
        text = getattr(request, name)
        if text is not None:
            inputs[name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return digest("script", SCRIPT_VERSION, inputs)


def is_base_model(gateway: Gateway, name: str) -> bool:
    """Local engines are base models, prompted by completion; every other provider speaks chat."""
    catalog = gateway.catalog
    return catalog.provider(catalog.get(name).provider).kind == "local"


def _tags(request: VideoRequest) -> dict[str, str]:
    return {**request.tags, "job": "creator-video", "step": "script"}


async def _as_json(request: VideoRequest, gateway: Gateway, written: list[Generation]) -> Written:
    """The whole script in one JSON answer, with one corrected retry; UnusableText if both fail."""
    ask = prompts.json_script_request(request.topic, request.language, request.seconds, request.style,
                                      source=request.source, speech_model=request.speech_model)
    problem = ""
    for attempt in range(JSON_ATTEMPTS):
        generation = await gateway.generate(ask, model=request.text, tags=_tags(request))
        written.append(generation)
        answer = generation.text or ""
        try:
            script, repairs = parse_script(answer, language=request.language, topic=request.topic)
            ungrounded = grounding_problem(script, request.source) if request.source is not None else None
            if ungrounded:
                raise UnusableText(ungrounded)
            if attempt < JSON_ATTEMPTS - 1:  # the last answer is taken at the length it has
                off = length_problem(script, request)
                if off:
                    raise UnusableText(off)
        except UnusableText as exc:
            problem = str(exc)
            log.info("script attempt %d from %s unusable: %s", attempt + 1, request.text, problem)
            note = Message("user", prompts.json_retry_note(problem))
            ask = TextRequest(
                messages=(*ask.messages, Message("assistant", answer), note),
                max_tokens=ask.max_tokens,
                response_format="json",
            )
            continue
        return Written(script, "json", list(written), repairs)
    raise UnusableText(problem)


def elsewhere_zh(sentence: str, topic: str) -> str | None:
    """A Chinese sentence about an example's topic (蜜蜂, 火山, 互联网) with not one character of the topic: the
    base model followed its examples. (MiniLM reads English only, so this is the Chinese off-topic check.)"""
    if any(char in sentence for char in topic if is_cjk(char)):
        return None
    for example in prompts.EXAMPLE_TOPICS["zh"]:
        if example in sentence:
            return f"it is about {example} instead of {topic}"
    return None


def length_problem(script: Script, request: VideoRequest) -> str | None:
    """Why a chat model's script would not last the time asked (outside LENGTH_TOLERANCE of it), or None."""
    budget = prompts.spoken_budget(request.seconds, request.language, request.speech_model)
    size = sum(spoken_size(scene.narration, request.language) for scene in script.scenes)
    if abs(size - budget) <= LENGTH_TOLERANCE * budget:
        return None
    unit = "characters" if request.language == "zh" else "words"
    return (f"the narration is {size} {unit} long; {request.seconds} seconds take about {budget} {unit}: "
            f"make it {'shorter' if size > budget else 'longer'}")


@dataclass(slots=True)
class _SceneWriter:
    """Writes scenes one sentence at a time, each checked against junk and everything said before it."""

    request: VideoRequest
    gateway: Gateway
    base: bool
    words: int
    written: list[Generation]
    said: list[str] = field(default_factory=list)

    def ask(self, angle: prompts.Angle, seed: int, temperature: float) -> TextRequest:
        request = self.request
        if self.base:
            prompt = prompts.completion_prompt(request.topic, angle, request.language)
            return TextRequest(
                prompt=prompt, max_tokens=SCENE_MAX_TOKENS, stop=("\n",), temperature=temperature, seed=seed
            )
        chat = prompts.chat_scene_request(request.topic, angle, request.language, request.style, self.words)
        return TextRequest(
            messages=chat.messages, max_tokens=chat.max_tokens, temperature=temperature, seed=seed
        )

    async def sentence(self, angle: prompts.Angle, first_seed: int, greedy: bool, room: float | None = None
                       ) -> str | None:
        """A checked sentence for ``angle`` (at most ``room`` long); None when every attempt gave junk or
        too long a sentence. Retries sample anew."""
        for attempt in range(SCENE_ATTEMPTS):
            temperature = 0.0 if greedy and attempt == 0 else RETRY_TEMPERATURE
            ask = self.ask(angle, first_seed + attempt, temperature)
            generation = await self.gateway.generate(ask, model=self.request.text, tags=_tags(self.request))
            self.written.append(generation)
            try:
                sentence = check_sentence(
                    generation.text or "",
                    self.request.language,
                    earlier=self.said,
                    examples=list(angle.examples),
                    cut=generation.finish_reason == "length",
                    max_words=max(30, 2 * self.words),
                )
            except UnusableText as exc:
                log.info(
                    "scene %r attempt %d from %s unusable: %s",
                    angle.prompt,
                    attempt + 1,
                    self.request.text,
                    exc,
                )
                continue
            if room is not None and spoken_size(sentence, self.request.language) > room:
                log.info("scene %r attempt %d from %s is longer than the time left", angle.prompt, attempt + 1,
                         self.request.text)
                continue
            if self.base:
                off = (await self.meaning_problem(sentence) if self.request.language == "en"
                       else elsewhere_zh(sentence, self.request.topic))
                if off:
                    log.info("scene %r attempt %d from %s asked again: %s", angle.prompt, attempt + 1,
                             self.request.text, off)
                    continue
            self.said.append(sentence)
            return sentence
        return None

    async def meaning_problem(self, sentence: str) -> str | None:
        """Off the topic, or saying what an earlier sentence said, by MiniLM similarity (through the gateway)."""
        examples = prompts.EXAMPLE_TOPICS[self.request.language]
        texts = (sentence, self.request.topic, *examples, *self.said)
        found = await self.gateway.embed(EmbeddingRequest(texts), model=EMBEDDING_MODEL, tags=_tags(self.request))
        vectors = np.asarray(found.vectors, dtype=np.float32)
        scores = vectors[1:] @ vectors[0]
        about, elsewhere = float(scores[0]), float(scores[1 : 1 + len(examples)].max())
        if about < OFF_TOPIC or about < elsewhere >= ELSEWHERE:
            return f"it is not about {self.request.topic!r} (similarity {about:.2f}, to an example's {elsewhere:.2f})"
        echo = float(scores[1 + len(examples) :].max(initial=0.0))
        if echo > REPEATED:
            return f"it says what an earlier sentence says (similarity {echo:.2f})"
        return None

    def scene(self, parts: list[str]) -> ScriptScene:
        joiner = "" if self.request.language == "zh" else " "
        narration = joiner.join(parts)
        return ScriptScene(narration=narration, on_screen_text=caption_from(narration, self.request.language))

    async def fill(self, angles: list[prompts.Angle], parts: list[list[str]], budget: int) -> None:
        """More sentences, shortest scene first, until the script is long enough for the time asked
        (FILL of its words) and never longer than OVERFILL of them: a base model's sentences vary in length."""
        language = self.request.language

        def size() -> int:
            return sum(spoken_size(sentence, language) for scene in parts for sentence in scene)

        for number in range(1, FILL_ROUNDS + 1):
            for index in sorted(range(len(parts)), key=lambda i: sum(spoken_size(s, language) for s in parts[i])):
                if size() >= FILL * budget:
                    return
                sentence = await self.sentence(angles[index], number * SCENE_ATTEMPTS, greedy=False,
                                               room=OVERFILL * budget - size())
                if sentence is not None:
                    parts[index].append(sentence)


async def _scene_by_scene(
    request: VideoRequest, gateway: Gateway, *, base: bool, written: list[Generation]
) -> Written:
    """The structure from code, each scene's text from the model (a base model: one sentence a call, then more
    sentences until the script is as long as the time asked)."""
    angles = prompts.angles_for(request.seconds, request.language)
    budget = prompts.spoken_budget(request.seconds, request.language, request.speech_model)
    words = max(12, budget // len(angles) + 5)
    writer = _SceneWriter(request, gateway, base, words, written)
    kept: list[prompts.Angle] = []
    parts: list[list[str]] = []
    for angle in angles:
        sentence = await writer.sentence(angle, 0, greedy=True)
        if sentence is not None:
            kept.append(angle)
            parts.append([sentence])
    if base and len(parts) >= MIN_SCENES:
        await writer.fill(kept, parts, budget)
    scenes = [writer.scene(scene) for scene in parts]
    if len(scenes) < MIN_SCENES:
        raise MalformedResponse(
            f"wrote only {len(scenes)} usable scenes of {len(angles)} in {len(written)} calls; rephrase the "
            "topic or choose a stronger text model (CONTENTMILL_TEXT_MODEL or the text_model parameter)",
            model=request.text,
        )
    title = prompts.script_title(request.topic, request.language)
    skipped = [f"{len(angles) - len(scenes)} scenes left out"] if len(scenes) < len(angles) else []
    script = Script(title=title, language=request.language, scenes=tuple(scenes), draft=base)
    return Written(script, "scenes", list(written), skipped)


async def _from_source(request: VideoRequest, gateway: Gateway, written: list[Generation]) -> Written:
    """The source's own sentences most about the topic, as long as the video (no text model call)."""
    assert request.source is not None
    script = await extract_script(
        request.topic, request.source, request.language, gateway=gateway, tags=_tags(request),
        budget=prompts.spoken_budget(request.seconds, request.language, request.speech_model),
        scenes=prompts.scene_count(request.seconds),
    )
    return Written(script, "source", list(written))


async def write_script(request: VideoRequest, gateway: Gateway) -> Written:
    """Write a checked script with the request's text model, whatever that model returns.

    With a source, a base model's script is extracted from it, and a chat model's script is accepted only when
    its numbers and names are the source's; a chat model that gives none falls back to the extract too."""
    written: list[Generation] = []
    base = is_base_model(gateway, request.text)
    if request.source is not None and base:
        return await _from_source(request, gateway, written)
    if base:
        return await _scene_by_scene(request, gateway, base=True, written=written)
    try:
        return await _as_json(request, gateway, written)
    except UnusableText as exc:
        if request.source is not None:
            log.warning("%s gave no script true to the source (%s); taking its sentences instead", request.text, exc)
            return await _from_source(request, gateway, written)
        log.warning("%s gave no usable JSON script (%s); writing it scene by scene", request.text, exc)
        return await _scene_by_scene(request, gateway, base=False, written=written)


def _stored(store: ObjectStore, key: str, found_digest: str) -> ScriptResult | None:
    record = store.get_json(key)
    if not isinstance(record, dict):
        return None
    try:
        return ScriptResult(
            key=key,
            digest=found_digest,
            script=Script.model_validate(record["script"]),
            strategy=str(record["strategy"]),
            report=StepReport.model_validate(record["report"]),
        )
    except (KeyError, ValidationError):
        return None  # an older or damaged record: written again


def _own(request: VideoRequest, store: ObjectStore, started: float) -> ScriptResult:
    """The creator's own script, stored at the address of its text: no model writes anything."""
    assert request.own_script is not None
    script = parse_own_script(request.own_script, request.language, prompts.script_title(request.topic,
                                                                                           request.language))
    found_digest = digest("script-own", SCRIPT_VERSION, script.model_dump(mode="json"))
    key = f"steps/script/{found_digest}.json"
    cached = store.exists(key)
    report = StepReport(step="script", cached=cached, seconds=round(time.perf_counter() - started, 4))
    if not cached:
        store.put_json(key, {"script": script.model_dump(mode="json"), "strategy": "own",
                             "report": report.model_dump(mode="json")})
    return ScriptResult(key=key, digest=found_digest, script=script, strategy="own", report=report)


async def script_step(request: VideoRequest, gateway: Gateway, store: ObjectStore) -> ScriptResult:
    """The stored script for this request, or a new one written, checked and stored; or the creator's own."""
    started = time.perf_counter()
    own = request.own_script is not None
    announce(StepEvent("script", "start", "reading your script" if own else f"writing with {request.text}"))
    found_digest = script_digest(request)
    key = f"steps/script/{found_digest}.json"
    stored = None if own else await asyncio.to_thread(_stored, store, key, found_digest)
    if own:
        result = await asyncio.to_thread(_own, request, store, started)
    elif stored is not None:
        result = stored.model_copy(update={"report": stored.report.reused(time.perf_counter() - started)})
    else:
        written = await write_script(request, gateway)
        report = StepReport.from_generations(
            "script", request.text, written.generations, seconds=time.perf_counter() - started
        )
        record = {
            "script": written.script.model_dump(mode="json"),
            "strategy": written.strategy,
            "repairs": written.repairs,
            "report": report.model_dump(mode="json"),
            "request": request.model_dump(
                mode="json", include={"topic", "language", "seconds", "style", "text_model"}
            ),
        }
        await asyncio.to_thread(store.put_json, key, record)
        result = ScriptResult(
            key=key, digest=found_digest, script=written.script, strategy=written.strategy, report=report
        )
    if request.scene_edits:
        result = await asyncio.to_thread(_edited, request, result, store)
    announce(StepEvent("script", "done", result.script.title, result.report))
    return result


def edit_script(script: Script, edits: Mapping[int, str]) -> Script:
    """The script with the narration of some scenes (numbered from 1) replaced, captions made anew."""
    count = len(script.scenes)
    unknown = sorted(number for number in edits if not 1 <= number <= count)
    if unknown:
        raise ValueError(f"scene_edits names scene {unknown[0]}, but the script has scenes 1 to {count}")
    scenes = list(script.scenes)
    for number, text in edits.items():
        narration = clean_text(text)
        if not narration:
            raise ValueError(f"the new narration of scene {number} has no words left once cleaned: {text!r}")
        scenes[number - 1] = ScriptScene(
            narration=narration, on_screen_text=caption_from(narration, script.language)
        )
    return script.model_copy(update={"scenes": tuple(scenes)})


def _edited(request: VideoRequest, base: ScriptResult, store: ObjectStore) -> ScriptResult:
    """The script with the request's scene edits."""
    edits = {str(number): text for number, text in request.scene_edits.items()}
    return revised(base, edit_script(base.script, request.scene_edits), store, {"edits": edits})


def revised(base: ScriptResult, script: Script, store: ObjectStore, change: Mapping[str, object]) -> ScriptResult:
    """A changed script (scene edits, a review), stored at its own address: it depends on the base script and
    the change alone. It keeps the base's report, so what writing it cost still shows."""
    found_digest = digest("script-edit", SCRIPT_VERSION, {"base": base.digest, **change})
    key = f"steps/script/{found_digest}.json"
    record = {
        "script": script.model_dump(mode="json"),
        "strategy": base.strategy,
        "base": base.key,
        **change,
        "report": base.report.model_dump(mode="json"),
    }
    store.put_json(key, record)
    return ScriptResult(key=key, digest=found_digest, script=script, strategy=base.strategy, report=base.report)
