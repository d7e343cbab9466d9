"""OpenAI's wire format on both sides of the server: request bodies in, completions, chunks and errors out.

Bodies are checked here, field by field, with OpenAI's parameter names in the messages, so a client learns
exactly which field to fix; nothing below the server sees a raw body.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from contentmill.gateway import Generation
from contentmill.metering import Usage
from contentmill.providers.base import TextChunk
from contentmill.requests import IMAGE_SIZE, EmbeddingRequest, ImageRequest, Message, SpeechRequest, TextRequest

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STOP = 4


class BadBody(Exception):
    """A request body the server cannot take; ``param`` names the field as OpenAI's API does."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadBody("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadBody("the request body must be a JSON object", code="invalid_json")
    return data


def _text(content: Any, where: str) -> str:
    """A message's content: a string, or a list of text parts (other kinds of part are refused)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise BadBody(f"{where}[{index}] must be a text part {{'type': 'text', 'text': ...}}; "
                              "images, audio and files are not supported", f"{where}[{index}]")
            parts.append(part["text"])
        return "".join(parts)
    raise BadBody(f"{where} must be a string or a list of text parts", where)


def _int(body: Mapping[str, Any], name: str, minimum: int, maximum: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
            maximum is not None and value > maximum):
        bound = f" and at most {maximum}" if maximum is not None else ""
        raise BadBody(f"'{name}' must be an integer of at least {minimum}{bound} (got {value!r})", name)
    return value


def _number(body: Mapping[str, Any], name: str, low: float, high: float, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadBody(f"'{name}' must be a number from {low:g} to {high:g} (got {value!r})", name)
    return float(value)


@dataclass(frozen=True, slots=True)
class ChatCall:
    """A parsed ``/v1/chat/completions`` body."""

    model: str
    request: TextRequest
    stream: bool
    include_usage: bool


def parse_chat(body: Mapping[str, Any], default_max_tokens: int) -> ChatCall:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise BadBody("'model' is required: a model name such as gpt-4o-mini, or auto / tier:NAME", "model",
                      "missing_required_parameter" if model is None else "invalid_value")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadBody("'messages' must be a non-empty list of {role, content} objects", "messages")
    messages = []
    for index, item in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(item, dict):
            raise BadBody(f"{where} must be an object with 'role' and 'content'", where)
        role = ROLES.get(item.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise BadBody(f"{where}.role must be one of system, developer, user, assistant "
                          f"(got {item.get('role')!r}); tool calls are not supported", f"{where}.role")
        messages.append(Message(role, _text(item.get("content"), f"{where}.content")))  # type: ignore[arg-type]
    if (_int(body, "n", 1, 1) or 1) != 1:
        raise BadBody("'n' must be 1", "n")
    if body.get("tools") or body.get("functions"):
        raise BadBody("tools and functions are not supported by this server", "tools", "unsupported_parameter")
    max_tokens = _int(body, "max_completion_tokens", 1) or _int(body, "max_tokens", 1) or default_max_tokens
    stop = body.get("stop")
    stops: tuple[str, ...] = ()
    if isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and len(stop) <= MAX_STOP and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    elif stop is not None:
        raise BadBody(f"'stop' must be a string or a list of up to {MAX_STOP} strings", "stop")
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else response_format
    if kind not in (None, "text", "json_object"):
        raise BadBody("'response_format.type' must be 'text' or 'json_object'", "response_format")
    stream = body.get("stream")
    if stream not in (None, True, False):
        raise BadBody("'stream' must be true or false", "stream")
    options = body.get("stream_options")
    if options is not None and not stream:
        raise BadBody("'stream_options' is only allowed when 'stream' is true", "stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    request = TextRequest(
        messages=tuple(messages), max_tokens=max_tokens, temperature=_number(body, "temperature", 0, 2, 1.0),
        stop=stops, seed=_int(body, "seed", -(2**63)),
        response_format="json" if kind == "json_object" else "text",
    )
    return ChatCall(model.strip(), request, bool(stream), include_usage)


@dataclass(frozen=True, slots=True)
class SpeechCall:
    model: str
    request: SpeechRequest


def parse_speech(body: Mapping[str, Any], max_characters: int = 4096) -> SpeechCall:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise BadBody("'model' is required, e.g. tts-1 or local:espeak-ng", "model")
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise BadBody("'input' must be the text to speak", "input")
    if len(text) > max_characters:
        raise BadBody(f"'input' is at most {max_characters} characters (got {len(text)})", "input")
    fmt = body.get("response_format", "wav")
    if fmt != "wav":
        raise BadBody(f"'response_format' must be 'wav' (got {fmt!r})", "response_format")
    voice = body.get("voice", "default")
    if not isinstance(voice, str) or not voice:
        raise BadBody("'voice' must be a voice name", "voice")
    speed = _number(body, "speed", 0.25, 4.0, 1.0)
    return SpeechCall(model.strip(), SpeechRequest(text, voice=voice, speed=speed))


@dataclass(frozen=True, slots=True)
class EmbeddingCall:
    model: str
    request: EmbeddingRequest
    base64: bool


MAX_EMBEDDING_INPUTS = 2048


def parse_embeddings(body: Mapping[str, Any]) -> EmbeddingCall:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise BadBody("'model' is required, e.g. text-embedding-3-small or local:all-minilm-l6-v2", "model")
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise BadBody("'input' must be a non-empty string or a list of non-empty strings (token arrays are not "
                      "supported)", "input")
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise BadBody(f"'input' holds at most {MAX_EMBEDDING_INPUTS} texts (got {len(texts)})", "input")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise BadBody(f"'encoding_format' must be 'float' or 'base64' (got {fmt!r})", "encoding_format")
    return EmbeddingCall(model.strip(), EmbeddingRequest(tuple(texts), _int(body, "dimensions", 1)), fmt == "base64")


@dataclass(frozen=True, slots=True)
class ImageCall:
    model: str
    request: ImageRequest


def parse_images(body: Mapping[str, Any]) -> ImageCall:
    """An image generation; the images always come back inline (``b64_json``), never as URLs to fetch."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise BadBody("'model' is required, e.g. gpt-image-1 or dall-e-3", "model")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadBody("'prompt' must be the text that describes the image", "prompt")
    size = body.get("size", "1024x1024")
    if not isinstance(size, str) or not IMAGE_SIZE.match(size):
        raise BadBody(f"'size' is WIDTHxHEIGHT, e.g. 1024x1536 (got {size!r})", "size")
    quality = body.get("quality")
    if quality is not None and (not isinstance(quality, str) or not quality):
        raise BadBody("'quality' must be the vendor's quality name, e.g. medium or standard", "quality")
    fmt = body.get("response_format", "b64_json")
    if fmt != "b64_json":
        raise BadBody(f"'response_format' must be 'b64_json' (got {fmt!r}): images are returned inline",
                      "response_format")
    n = _int(body, "n", 1, 10) or 1
    return ImageCall(model.strip(), ImageRequest(prompt, size=size, quality=quality, n=n))


# -- answers ------------------------------------------------------------------------------------------------


def usage_body(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
    }


def completion_body(gen: Generation, completion_id: str) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": gen.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text or ""},
                     "logprobs": None, "finish_reason": gen.finish_reason or "stop"}],
        "usage": usage_body(gen.usage),
    }


def embeddings_body(gen: Generation, as_base64: bool) -> dict[str, Any]:
    def encoded(vector: list[float]) -> Any:
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if as_base64 else vector

    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encoded(v)} for i, v in enumerate(gen.vectors or [])],
        "model": gen.model,
        "usage": {"prompt_tokens": gen.usage.input_tokens, "total_tokens": gen.usage.input_tokens},
    }


def images_body(gen: Generation) -> dict[str, Any]:
    return {"created": int(time.time()),
            "data": [{"b64_json": base64.b64encode(image).decode()} for image in gen.images or ()]}


class ChunkWriter:
    """Server-Sent Events of one streamed completion, in OpenAI's chunk shape."""

    def __init__(self, completion_id: str, model: str) -> None:
        self.head = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": model}

    def _event(self, data: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps({**self.head, **data}) + b"\n\n"

    def role(self) -> bytes:
        return self._event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                         "logprobs": None, "finish_reason": None}]})

    def piece(self, chunk: TextChunk) -> bytes:
        return self._event({"choices": [{"index": 0, "delta": {"content": chunk.delta}, "logprobs": None,
                                         "finish_reason": None}]})

    def finish(self, reason: str) -> bytes:
        return self._event({"choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}]})

    def usage(self, usage: Usage) -> bytes:
        return self._event({"choices": [], "usage": usage_body(usage)})

    @staticmethod
    def error(body: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(body) + b"\n\n"

    DONE = b"data: [DONE]\n\n"


def error_body(message: str, kind: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code, "param": param}}
