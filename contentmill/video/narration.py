"""The narration step: speech for every scene, timed by measuring the audio it produced.

Each scene's clip is stored at its own address (text, voice, language, speech model), so a rerun after a
failure halfway through pays only for the clips still missing, and two videos that share a sentence share
its clip. Remote engines speak several scenes at once; an embedded engine speaks one at a time. A voice that
marks where it starts each word (espeak-ng, in its WAV) has those marks kept in the clip's record, for karaoke.
"""

from __future__ import annotations

import asyncio
import time
import wave

from pydantic import BaseModel, ConfigDict, ValidationError

from contentmill.audio import wav_info
from contentmill.errors import MalformedResponse
from contentmill.gateway import Gateway, Generation
from contentmill.providers.word_marks import WordMark, word_marks
from contentmill.requests import SpeechRequest
from contentmill.storage import ObjectStore
from contentmill.video.progress import StepEvent, announce
from contentmill.video.records import StepReport, digest, every_one
from contentmill.video.request import VideoRequest
from contentmill.video.writing import ScriptResult

NARRATION_VERSION = 1
REMOTE_CONCURRENCY = 4


class Clip(BaseModel):
    """One scene's narration audio: where the WAV is stored, how long it really lasts, and where the voice starts
    each word of the narration (empty for a voice that does not say)."""

    model_config = ConfigDict(frozen=True)

    key: str
    digest: str
    narration: str
    duration_s: float
    cost_usd: float = 0.0
    words: tuple[WordMark, ...] = ()


class NarrationResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    digest: str
    clips: tuple[Clip, ...]
    report: StepReport

    @property
    def duration_s(self) -> float:
        return sum(clip.duration_s for clip in self.clips)


def clip_digest(text: str, request: VideoRequest) -> str:
    inputs = {
        "text": text,
        "voice": request.voice,
        "language": request.language,
        "speech_model": request.speech,
    }
    return digest("speech", NARRATION_VERSION, inputs)


def _load_clip(store: ObjectStore, clip_key: str, found: str, text: str) -> Clip | None:
    """A clip stored earlier, if both its WAV and its record (written after the WAV) are there."""
    record = store.get_json(f"{clip_key}.json")
    if not isinstance(record, dict) or not store.exists(f"{clip_key}.wav"):
        return None
    try:
        return Clip(
            key=f"{clip_key}.wav",
            digest=found,
            narration=text,
            duration_s=float(record["duration_s"]),
            cost_usd=float(record["cost_usd"]),
            words=record.get("words", ()),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _measured(generation: Generation, model: str) -> float:
    """Seconds of audio counted from the WAV's frames: the one clock for slides and subtitles."""
    try:
        return wav_info(generation.audio or b"").duration_s
    except (wave.Error, EOFError) as exc:
        raise MalformedResponse(f"the speech is not a readable WAV file ({exc})", model=model) from None


def _save_clip(store: ObjectStore, clip_key: str, generation: Generation, duration: float,
               words: tuple[WordMark, ...]) -> None:
    store.put(f"{clip_key}.wav", generation.audio or b"", "audio/wav")
    store.put_json(
        f"{clip_key}.json",
        {
            "model": generation.model,
            "usage": generation.usage.as_dict(),
            "cost_usd": generation.cost_usd,
            "duration_s": duration,
            "sample_rate": generation.sample_rate,
            "words": [list(word) for word in words],
        },
    )


async def _clip(
    text: str,
    request: VideoRequest,
    gateway: Gateway,
    store: ObjectStore,
    limit: asyncio.Semaphore,
    made: list[Generation],
) -> Clip:
    found = clip_digest(text, request)
    clip_key = f"steps/speech/{found}"
    stored = await asyncio.to_thread(_load_clip, store, clip_key, found, text)
    if stored is not None:
        return stored
    async with limit:
        speech = SpeechRequest(text, voice=request.voice, language=request.language)
        tags = {**request.tags, "job": "creator-video", "step": "narration"}
        generation = await gateway.speak(speech, model=request.speech, tags=tags)
    made.append(generation)
    duration = _measured(generation, request.speech)
    words = word_marks(generation.audio or b"", text)
    await asyncio.to_thread(_save_clip, store, clip_key, generation, duration, words)
    return Clip(key=f"{clip_key}.wav", digest=found, narration=text, duration_s=duration,
                cost_usd=generation.cost_usd, words=words)


async def _all_clips(
    texts: list[str],
    request: VideoRequest,
    gateway: Gateway,
    store: ObjectStore,
    limit: asyncio.Semaphore,
    made: list[Generation],
) -> list[Clip]:
    """Every clip, each stored as soon as it is made: one failure does not throw away the others' audio."""
    return await every_one(_clip(text, request, gateway, store, limit, made) for text in texts)


def _concurrency(gateway: Gateway, model: str) -> int:
    catalog = gateway.catalog
    local = catalog.provider(catalog.get(model).provider).kind == "local"
    return 1 if local else REMOTE_CONCURRENCY


def _stored(store: ObjectStore, key: str, found: str) -> NarrationResult | None:
    record = store.get_json(key)
    if not isinstance(record, dict):
        return None
    try:
        clips = tuple(Clip.model_validate(item) for item in record["clips"])
        return NarrationResult(
            key=key, digest=found, clips=clips, report=StepReport.model_validate(record["report"])
        )
    except (KeyError, TypeError, ValidationError):
        return None


async def narration_step(
    request: VideoRequest, script: ScriptResult, gateway: Gateway, store: ObjectStore
) -> NarrationResult:
    """Speech for every scene (stored clips reused), with durations measured from the audio."""
    started = time.perf_counter()
    announce(StepEvent("narration", "start", f"speaking with {request.speech}"))
    texts = [scene.narration for scene in script.script.scenes]
    found = digest("narration", NARRATION_VERSION, [clip_digest(text, request) for text in texts])
    key = f"steps/narration/{found}.json"
    stored = await asyncio.to_thread(_stored, store, key, found)
    if stored is not None:
        result = stored.model_copy(update={"report": stored.report.reused(time.perf_counter() - started)})
    else:
        made: list[Generation] = []
        limit = asyncio.Semaphore(_concurrency(gateway, request.speech))
        clips = await _all_clips(texts, request, gateway, store, limit, made)
        reused = sum(clip.cost_usd for clip in clips) - sum(gen.cost_usd for gen in made)
        report = StepReport.from_generations(
            "narration",
            request.speech,
            made,
            reused_cost_usd=reused,
            reused=len(made) < len(clips),
            seconds=time.perf_counter() - started,
        )
        result = NarrationResult(key=key, digest=found, clips=tuple(clips), report=report)
        record = {
            "clips": [clip.model_dump(mode="json") for clip in clips],
            "report": report.model_dump(mode="json"),
        }
        await asyncio.to_thread(store.put_json, key, record)
    announce(StepEvent("narration", "done", f"{result.duration_s:.1f} s of speech", result.report))
    return result
