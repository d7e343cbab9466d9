"""What a call produced (``Generation``), what it may use before it runs, and how it is kept in the cache.

The codecs turn a generation into the value its cache tier stores and back: the online call, the stream and
the Batch API store and read answers through the same codec, so a batch's answer serves a later online call.
A decoded generation costs nothing: the caller marks it as the hit it is (``Generation.as_hit``).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from contentmill.audio import wav_info
from contentmill.cache import IMAGES, JSON, WAV
from contentmill.cache.serializers import Serializer
from contentmill.metering import TOKENS_PER_MESSAGE, TOKENS_REPLY_PRIMING, Usage
from contentmill.providers.base import EmbeddingResult, ImageResult, SpeechResult, TextModel, TextResult
from contentmill.requests import EmbeddingRequest, ImageRequest, SpeechRequest, TextRequest

Result = TextResult | SpeechResult | EmbeddingResult | ImageResult
AnyRequest = TextRequest | SpeechRequest | EmbeddingRequest | ImageRequest
DEFAULT_TENANT = "default"  # cache scope of calls without a team tag
INEXACT_TOKENIZER_MARGIN = 1.25  # our count for a vendor whose tokenizer we lack is an estimate: reserve more


@dataclass(frozen=True, slots=True)
class Generation:
    """What one call produced and what it cost. ``estimate`` is the usage reserved before the call;
    ``latency_s`` is the provider's time (retries included), never the wait for admission."""

    model: str
    usage: Usage
    cost_usd: float
    estimate: Usage
    latency_s: float
    attempts: int = 1
    cached: bool = False
    request_id: str | None = None
    text: str | None = None
    finish_reason: str | None = None
    audio: bytes | None = field(default=None, repr=False)
    sample_rate: int | None = None
    duration_s: float | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    saved_usd: float = 0.0  # on a cache hit: what the first call cost
    cache_tier: str | None = None
    vectors: list[list[float]] | None = field(default=None, repr=False)
    images: tuple[bytes, ...] | None = field(default=None, repr=False)

    def as_hit(self, saved_usd: float, tier: str, tags: Mapping[str, str]) -> Generation:
        """This answer served again from the cache: nothing charged, ``saved_usd`` saved."""
        return replace(self, cost_usd=0.0, cached=True, saved_usd=saved_usd, cache_tier=tier, latency_s=0.0,
                       attempts=0, tags=tags)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (audio bytes are left out; their length is kept)."""
        data: dict[str, Any] = {
            "model": self.model,
            "usage": self.usage.as_dict(),
            "estimate": self.estimate.as_dict(),
            "cost_usd": round(self.cost_usd, 10),
            "cached": self.cached,
            "saved_usd": round(self.saved_usd, 10),
            "latency_s": round(self.latency_s, 4),
            "attempts": self.attempts,
            "request_id": self.request_id,
            "tags": dict(self.tags),
        }
        if self.text is not None:
            data["text"] = self.text
            data["finish_reason"] = self.finish_reason
        if self.audio is not None:
            data.update(audio_bytes=len(self.audio), sample_rate=self.sample_rate, duration_s=self.duration_s)
        if self.vectors is not None:
            data.update(vectors=len(self.vectors), dimensions=len(self.vectors[0]) if self.vectors else 0)
        if self.images is not None:
            data["image_bytes"] = [len(image) for image in self.images]
        return data


def generation(result: Result, *, model: str, usage: Usage, cost_usd: float, estimate: Usage, latency_s: float,
               attempts: int, tags: Mapping[str, str]) -> Generation:
    """The generation of a provider's answer, billed at ``usage`` and ``cost_usd``."""
    common: dict[str, Any] = {
        "model": model, "usage": usage, "cost_usd": cost_usd, "estimate": estimate, "latency_s": latency_s,
        "attempts": attempts, "request_id": result.request_id, "tags": tags,
    }
    if isinstance(result, TextResult):
        return Generation(**common, text=result.text, finish_reason=result.finish_reason)
    if isinstance(result, EmbeddingResult):
        return Generation(**common, vectors=result.vectors)
    if isinstance(result, ImageResult):
        return Generation(**common, images=result.images)
    return Generation(**common, audio=result.audio, sample_rate=result.sample_rate, duration_s=result.duration_s)


def estimate_text_usage(model: TextModel, request: TextRequest, exact: bool = True) -> Usage:
    """Input tokens counted now plus the full max output: the most this call can use."""
    if request.prompt is not None:
        input_tokens = model.count_tokens(request.prompt)
    else:
        input_tokens = TOKENS_REPLY_PRIMING + sum(
            TOKENS_PER_MESSAGE + model.count_tokens(m.content) + model.count_tokens(m.role)
            for m in request.messages
        )
    if not exact:
        input_tokens = math.ceil(input_tokens * INEXACT_TOKENIZER_MARGIN)
    return Usage(input_tokens=input_tokens, output_tokens=request.max_tokens, estimated=True)


def request_hash(model: str, request: AnyRequest, template_version: str | None = None) -> str:
    """A digest of what determines the output, for the ledger when the cache (whose key digest serves) is off."""
    return hashlib.sha256(orjson.dumps([model, repr(request), template_version])).hexdigest()


@dataclass(frozen=True)
class Codec:
    """How a generation is kept in the cache (``encode``) and rebuilt from it for a model and an estimate."""

    serializer: Serializer[Any]
    encode: Callable[[Generation], Any]
    decode: Callable[[Any, str, Usage], Generation]


def _text_encode(gen: Generation) -> dict[str, Any]:
    return {"text": gen.text, "finish_reason": gen.finish_reason, "usage": gen.usage.as_dict(),
            "request_id": gen.request_id}


def _text_decode(value: dict[str, Any], model: str, estimate: Usage) -> Generation:
    return Generation(model=model, usage=Usage.from_dict(value["usage"]), cost_usd=0.0, estimate=estimate,
                      latency_s=0.0, request_id=value.get("request_id"), text=value["text"],
                      finish_reason=value.get("finish_reason"))


def _speech_encode(gen: Generation) -> bytes:
    return gen.audio or b""


def _speech_decode(audio: bytes, model: str, estimate: Usage) -> Generation:
    info = wav_info(audio)
    usage = Usage(characters=estimate.characters, seconds=info.duration_s)
    return Generation(model=model, usage=usage, cost_usd=0.0, estimate=estimate, latency_s=0.0, audio=audio,
                      sample_rate=info.sample_rate, duration_s=info.duration_s)


def _embedding_encode(gen: Generation) -> dict[str, Any]:
    return {"vectors": gen.vectors, "usage": gen.usage.as_dict(), "request_id": gen.request_id}


def _embedding_decode(value: dict[str, Any], model: str, estimate: Usage) -> Generation:
    return Generation(model=model, usage=Usage.from_dict(value["usage"]), cost_usd=0.0, estimate=estimate,
                      latency_s=0.0, request_id=value["request_id"], vectors=value["vectors"])


def _image_encode(gen: Generation) -> bytes:
    """The images as bytes (never JSON: base64 of a picture can look like a credential to the JSON check): a
    count, then each image's length and bytes."""
    images = gen.images or ()
    return struct.pack("<I", len(images)) + b"".join(struct.pack("<I", len(i)) + i for i in images)


def _image_decode(packed: bytes, model: str, estimate: Usage) -> Generation:
    (count,), offset, images = struct.unpack_from("<I", packed), 4, []
    for _ in range(count):
        (length,) = struct.unpack_from("<I", packed, offset)
        images.append(packed[offset + 4: offset + 4 + length])
        offset += 4 + length
    return Generation(model=model, usage=Usage(images=count), cost_usd=0.0, estimate=estimate, latency_s=0.0,
                      images=tuple(images))


TEXT = Codec(JSON, _text_encode, _text_decode)
EMBEDDING = Codec(JSON, _embedding_encode, _embedding_decode)
SPEECH = Codec(WAV, _speech_encode, _speech_decode)
IMAGE = Codec(IMAGES, _image_encode, _image_decode)
