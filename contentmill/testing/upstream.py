"""A fake OpenAI-compatible upstream: a real local HTTP server that answers like OpenAI's API, for free.

Tests, benchmarks and users point any OpenAI-compatible client at it in place of a paid API. It answers
``POST /v1/chat/completions`` (plain, streamed as Server-Sent Events, JSON mode) with ``fake_reply``,
``POST /v1/audio/speech`` with a WAV tone as long as the text takes to say, ``POST /v1/embeddings`` with unit
vectors drawn from each text's digest, ``POST /v1/images/generations`` with PNGs drawn from each prompt and
a Pexels-like footage search with generated clips under ``/pexels`` (``visuals_api.py``), and ``GET /v1/models``.
Usage is counted with tiktoken the way OpenAI bills it, and each API key gets OpenAI's continuously refilling
requests-per-minute and tokens-per-minute buckets, with its ``x-ratelimit-*`` headers and 429 answers.
``GET /stats`` shows what was served (keys only by fingerprint); ``POST /stats/reset`` zeroes it. The Batch API
(``/v1/files``, ``/v1/batches``; see ``batch_api.py``) completes a batch after ``--batch-delay-ms``.

Faults are injected per request with the header ``X-Upstream-Fault`` (before any capacity is taken)::

    500 | 503       that status with OpenAI's server_error body, after the request's latency
    429             a rate-limit refusal with Retry-After: 1
    timeout         nothing for 30 s, longer than any client waits (cancelled when the client goes away)
    malformed       HTTP 200 whose body cannot be read (cut-off JSON, or a cut-off WAV for speech)
    disconnect      the connection is closed without an answer
    trickle         HTTP 200 whose JSON body comes one byte a second (a server stuck mid-answer)

and ``X-Upstream-Latency-Ms: N`` sets the latency of one request. ``X-Upstream-Usage`` answers (chat, streamed or
not, and embeddings) with a usage block a broken vendor might send, the content left as it is::

    negative        every count negated (a zero becomes -1)
    text            every count the string "n/a"
    null            every count null
    huge            every count 10**12
    empty-choices   the usage right, but no choices (no data for embeddings); a stream's pieces carry none

``--wrong-usage KIND`` does the same to every such answer that names no kind itself, and ``--fault KIND`` gives
every chat, speech and embedding request that names no fault that one.

``--error-rate F`` answers that share of the other chat and speech requests with HTTP 500, drawn in arrival
order from ``--seed``, so a run is reproducible; ``--rate-429 F`` refuses that share of chat requests with a
429. A prompt carrying a JSON array of items with ids gets one answer per item (``packed.py``;
``--corrupt-item ID`` makes one go wrong in company), and ``/stats`` counts those items (``items``, ``item_ids``).
Run it as::

    python -m contentmill.testing.upstream --port 0 --rpm 500 --tpm 30000

It prints ``ready http://HOST:PORT/v1`` once it listens, and stops cleanly on SIGTERM or SIGINT.

``--cut-streams-after N`` closes every streamed answer's connection after N events, as a dropped connection
would. ``/stats`` counts the content tokens streams wrote (``streamed_output_tokens``) and the streams that
ended early (``streams_cut``).

``--model-profile NAME=LATENCY_MS:TOKENS_FACTOR`` (repeatable) gives one model its own latency and plain answers
that many times as long, so models compared on this server differ in speed and tokens as real ones do.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import random
import re
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any

from aiohttp import web

from contentmill.audio import CHARS_PER_SECOND, tone
from contentmill.errors import ConfigError
from contentmill.metering import count_message_tokens, count_tokens, encoding_name_for, get_encoding
from contentmill.providers.fake import fake_reply
from contentmill.testing.packed import packed_items, packed_reply, word_limit

DEFAULT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "tts-1", "text-embedding-3-small",
                  "text-embedding-3-large", "gpt-image-1", "dall-e-3")
EMBEDDING_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072}
# Effectively unlimited unless --rpm/--tpm say otherwise, so that benchmarks measure the client, not the limits.
DEFAULT_RPM = 1_000_000
DEFAULT_TPM = 1_000_000_000
DEFAULT_MAX_TOKENS = 4096  # output bound and TPM charge of a chat request that names no max_tokens
TIMEOUT_FAULT_S = 30.0
TRICKLE_S = 600  # how long a trickling body goes on, a byte a second, if the client stays
DEFAULT_BATCH_DELAY_MS = 200.0  # how long a batch runs before it completes (a real one may take up to 24 h)
SPEECH_SAMPLE_RATE = 24_000  # OpenAI's TTS sample rate
SPEECH_MAX_CHARS = 4096  # OpenAI's limit on a speech request's input
MAX_BODY_BYTES = 32 * 1024 * 1024
ORGANIZATION = "org-upstream"
FAULTS = ("500", "503", "429", "timeout", "malformed", "disconnect", "trickle")
USAGE_FAULTS = ("negative", "text", "null", "huge", "empty-choices")
HUGE_COUNT = 10**12
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_PIECES = re.compile(r"\s*\S+|\s+")  # words with their leading space: they join back to the exact text
_DONE = b"data: [DONE]\n\n"
_MALFORMED_JSON = (b'{"id": "chatcmpl-', "application/json")
_MALFORMED_WAV = (b"RIFF\x24\x08\x00\x00WAVEfmt ", "audio/wav")

Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


def format_duration(seconds: float) -> str:
    """OpenAI's duration format for rate-limit resets (Go's, to the millisecond, rounded up): 120ms, 1.5s, 6m0s."""
    ms = math.ceil(round(seconds * 1000, 6))
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


@lru_cache(maxsize=4096)
def key_fingerprint(key: str) -> str:
    """How a key is shown anywhere (stats, errors): ``sk-...abcd``; short keys get a digest so nothing leaks."""
    prefix = key[:3] if key.startswith("sk-") else ""
    tail = key[-4:] if len(key) >= 20 else hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"{prefix}...{tail}"


class Bucket:
    """A continuously refilling allowance of ``limit`` units a minute, full at the start, as OpenAI keeps them."""

    __slots__ = ("limit", "_rate", "_level", "_stamp")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._rate = limit / 60.0
        self._level = float(limit)
        self._stamp = time.monotonic()

    def level(self, now: float) -> float:
        self._level = min(float(self.limit), self._level + (now - self._stamp) * self._rate)
        self._stamp = now
        return self._level

    def remaining(self, now: float) -> int:
        return int(self.level(now))

    def wait_s(self, amount: int, now: float) -> float:
        """Seconds until ``amount`` units are available (0 when they are now)."""
        return max(0.0, (amount - self.level(now)) / self._rate)

    def reset_s(self, now: float) -> float:
        """Seconds until the bucket is full again (OpenAI's x-ratelimit-reset-*)."""
        return (self.limit - self.level(now)) / self._rate

    def take(self, amount: int, now: float) -> None:
        self._level = self.level(now) - amount


@dataclass(slots=True)
class KeyLimits:
    """The RPM and TPM buckets of one API key."""

    requests: Bucket
    tokens: Bucket

    def headers(self) -> dict[str, str]:
        now = time.monotonic()
        return {
            "x-ratelimit-limit-requests": str(self.requests.limit),
            "x-ratelimit-limit-tokens": str(self.tokens.limit),
            "x-ratelimit-remaining-requests": str(self.requests.remaining(now)),
            "x-ratelimit-remaining-tokens": str(self.tokens.remaining(now)),
            "x-ratelimit-reset-requests": format_duration(self.requests.reset_s(now)),
            "x-ratelimit-reset-tokens": format_duration(self.tokens.reset_s(now)),
        }


@dataclass(slots=True)
class Counters:
    requests: int = 0
    rejected_429: int = 0
    errors_5xx: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    characters: int = 0
    streamed_output_tokens: int = 0  # content tokens a stream wrote before it ended or its client went away
    streams_cut: int = 0  # streams whose client went away before the end


@dataclass(slots=True)
class BatchCounters:
    """Batch API work, counted apart from online requests (OpenAI bills and limits it apart)."""

    batches: int = 0
    requests: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


class Stats:
    """What the server served and refused, in total, per key fingerprint and per model; batch work apart."""

    def __init__(self) -> None:
        self.total = Counters()
        self.by_key: defaultdict[str, Counters] = defaultdict(Counters)
        self.by_model: defaultdict[str, Counters] = defaultdict(Counters)
        self.batch = BatchCounters()

    def reset(self) -> None:
        self.total = Counters()
        self.batch = BatchCounters()
        self.by_key.clear()
        self.by_model.clear()

    def _counters(self, key: str | None, model: str | None) -> list[Counters]:
        found = [self.total]
        if key is not None:
            found.append(self.by_key[key_fingerprint(key)])
        if model is not None:
            found.append(self.by_model[model])
        return found

    def served(self, key: str, model: str, input_tokens: int = 0, output_tokens: int = 0, characters: int = 0) -> None:
        for counters in self._counters(key, model):
            counters.requests += 1
            counters.input_tokens += input_tokens
            counters.output_tokens += output_tokens
            counters.characters += characters

    def streamed(self, key: str, model: str, output_tokens: int, cut: bool) -> None:
        for counters in self._counters(key, model):
            counters.streamed_output_tokens += output_tokens
            counters.streams_cut += int(cut)

    def refused(self, key: str | None, model: str | None, status: int) -> None:
        for counters in self._counters(key, model):
            if status == 429:
                counters.rejected_429 += 1
            elif status >= 500:
                counters.errors_5xx += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.total),
            "by_key": {name: asdict(c) for name, c in self.by_key.items()},
            "by_model": {name: asdict(c) for name, c in self.by_model.items()},
            "batch": asdict(self.batch),
        }


class ApiError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return web.json_response({"error": error}, status=self.status, headers=self.headers)


def _bad_request(message: str, param: str | None = None, code: str | None = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _server_error(status: int) -> ApiError:
    if status == 503:
        return ApiError(503, "The server is overloaded or not ready yet.", kind="server_error", code="server_error")
    message = "The server had an error while processing your request. Sorry about that!"
    return ApiError(500, message, kind="server_error", code="server_error")


def _retry_headers(wait_s: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(wait_s))), "retry-after-ms": str(math.ceil(wait_s * 1000))}


def _rate_limited(model: str, kind: str, limit: int, used: int, requested: int, wait_s: float) -> ApiError:
    label = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
    message = (
        f"Rate limit reached for {model} in organization {ORGANIZATION} on {label}: Limit {limit}, "
        f"Used {used}, Requested {requested}. Please try again in {format_duration(wait_s)}."
    )
    return ApiError(429, message, kind=kind, code="rate_limit_exceeded", headers=_retry_headers(wait_s))


def _too_large(model: str, limit: int, requested: int) -> ApiError:
    message = (
        f"Request too large for {model} in organization {ORGANIZATION} on tokens per min (TPM): Limit {limit}, "
        f"Requested {requested}. The input or output tokens must be reduced in order to run successfully."
    )
    return ApiError(429, message, kind="tokens", code="rate_limit_exceeded")


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


# -- requests -------------------------------------------------------------------------------------------------


async def _json_body(request: web.Request) -> Mapping[str, Any]:
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise _bad_request(
            "We could not parse the JSON body of your request. The API expects a JSON payload.", code=None
        ) from None
    if not isinstance(body, dict):
        raise _bad_request("The request body must be a JSON object.", code="invalid_type")
    return body


def _required_str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise _bad_request(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
    if not isinstance(value, str) or not value:
        raise _bad_request(f"Invalid '{name}': expected a non-empty string.", name, "invalid_type")
    return value


def _optional_int(body: Mapping[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad_request(f"Invalid '{name}': expected an integer of at least {minimum} (got {value!r}).", name)
    return value


def _content_text(content: Any, where: str) -> str:
    """A message's text: a string, text parts joined, or nothing (an assistant turn with tool calls)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        return "".join(str(part.get("text", "")) for part in content if part.get("type") == "text")
    raise _bad_request(f"Invalid '{where}': expected a string or an array of content parts.", where, "invalid_type")


def _message(index: int, raw: Any) -> dict[str, str]:
    where = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise _bad_request(f"Invalid '{where}': expected an object.", where, "invalid_type")
    role = raw.get("role")
    if role not in _ROLES:
        raise _bad_request(f"Invalid '{where}.role': expected one of {', '.join(sorted(_ROLES))}.", f"{where}.role")
    message = {"role": role, "content": _content_text(raw.get("content"), f"{where}.content")}
    if isinstance(raw.get("name"), str):
        message["name"] = raw["name"]
    return message


def _stop_sequences(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise _bad_request("Invalid 'stop': expected a string or an array of up to 4 strings.", "stop")
    return tuple(stops)


def _json_mode(value: Any) -> bool:
    kind = value.get("type") if isinstance(value, dict) else value
    if kind is None or kind == "text":
        return False
    if kind == "json_object":
        return True
    raise _bad_request(
        f"Invalid 'response_format': this upstream answers 'text' or 'json_object' (got {kind!r}).",
        "response_format",
    )


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }


@dataclass(frozen=True, slots=True)
class ChatCall:
    """A validated chat completion request."""

    model: str
    messages: tuple[dict[str, str], ...]
    max_tokens: int = DEFAULT_MAX_TOKENS
    stream: bool = False
    include_usage: bool = False
    json_mode: bool = False
    stop: tuple[str, ...] = ()
    seed: int = 0
    corrupt: frozenset[str] = frozenset()  # item ids a packed answer gets wrong when asked with others
    verbosity: float = 1.0  # a model profile's tokens factor: the plain answer is this many times as long
    encoding: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoding", encoding_name_for(self.model))

    def text(self) -> str:
        return "\n".join(m["content"] for m in self.messages)

    def prompt_tokens(self) -> int:
        return count_message_tokens(self.messages, self.encoding)

    def answer(self, prompt_tokens: int) -> Answer:
        items = packed_items(self.messages[-1]["content"])
        if items is not None:  # one answer per item of a packed prompt (see contentmill.testing.packed)
            reply = packed_reply(items, self.corrupt, word_limit(self.text()))
            text, finish = _truncate(reply, self.max_tokens, self.encoding)
        elif self.json_mode:
            prose, _ = fake_reply(self.text(), DEFAULT_MAX_TOKENS, self.seed, self.encoding)
            text, finish = _truncate(json.dumps({"answer": prose}), self.max_tokens, self.encoding)
        elif self.verbosity != 1.0:
            text, finish = verbose_reply(self.text(), self.max_tokens, self.seed, self.encoding, self.verbosity)
        else:
            text, finish = fake_reply(self.text(), self.max_tokens, self.seed, self.encoding)
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            text, finish = text[:cut], "stop"
        return Answer(text, finish, prompt_tokens, count_tokens(text, self.encoding))


def verbose_reply(text: str, max_tokens: int, seed: int, encoding: str, factor: float) -> tuple[str, str]:
    """``fake_reply``'s words, repeated or cut to ``factor`` times as many (at least one), within max_tokens."""
    words = fake_reply(text, DEFAULT_MAX_TOKENS, seed, encoding)[0].removesuffix(".").split(" ")
    wanted = max(1, round(len(words) * factor))
    longer = [words[i % len(words)] for i in range(wanted)]
    return _truncate(" ".join(longer) + ".", max_tokens, encoding)


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """How one model differs (``--model-profile NAME=LATENCY_MS:TOKENS_FACTOR``): its latency and how many times
    as long its plain answers are, so that models compared on the fake upstream differ as real ones do."""

    model: str
    latency_ms: float | None = None
    tokens_factor: float = 1.0

    @classmethod
    def parse(cls, text: str) -> ModelProfile:
        model, sep, rest = text.partition("=")
        latency, _, factor = rest.partition(":")
        usage = f"--model-profile is NAME=LATENCY_MS:TOKENS_FACTOR, e.g. gpt-4o=120:1.4 (got {text!r})"
        if not sep or not model.strip():
            raise ConfigError(usage)
        try:
            latency_ms = float(latency) if latency.strip() else None
            tokens_factor = float(factor) if factor.strip() else 1.0
        except ValueError:
            raise ConfigError(usage) from None
        if (latency_ms is not None and latency_ms < 0) or tokens_factor <= 0:
            raise ConfigError(f"--model-profile {text!r}: latency cannot be negative and the factor must be positive")
        return cls(model.strip(), latency_ms, tokens_factor)


def _truncate(text: str, max_tokens: int, encoding: str) -> tuple[str, str]:
    ids = get_encoding(encoding).encode_ordinary(text)
    if len(ids) <= max_tokens:
        return text, "stop"
    return get_encoding(encoding).decode(ids[:max_tokens]), "length"


def parse_chat(body: Mapping[str, Any]) -> ChatCall:
    """Check a chat completion body the way OpenAI does; a wrong field is a 400 that names it."""
    model = _required_str(body, "model")
    raw = body.get("messages")
    if raw is None:
        raise _bad_request("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    if not isinstance(raw, list) or not raw:
        raise _bad_request("Invalid 'messages': expected a non-empty array of messages.", "messages", "invalid_type")
    if body.get("n", 1) != 1:
        raise _bad_request("Invalid 'n': this upstream answers one choice per request (n=1).", "n")
    stream = body.get("stream") is True
    options = body.get("stream_options")
    if options is not None and not stream:
        raise _bad_request("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")
    max_tokens = _optional_int(body, "max_completion_tokens", 1) or _optional_int(body, "max_tokens", 1)
    call = ChatCall(
        model=model,
        messages=tuple(_message(i, m) for i, m in enumerate(raw)),
        max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
        stream=stream,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        json_mode=_json_mode(body.get("response_format")),
        stop=_stop_sequences(body.get("stop")),
        seed=_optional_int(body, "seed", -(2**63)) or 0,
    )
    if call.json_mode and "json" not in call.text().lower():
        raise _bad_request(
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
            "messages",
        )
    return call


@dataclass(frozen=True, slots=True)
class SpeechCall:
    model: str
    text: str
    speed: float

    @property
    def seconds(self) -> float:
        return max(0.2, len(self.text) / CHARS_PER_SECOND / self.speed)


def parse_speech(body: Mapping[str, Any]) -> SpeechCall:
    """Check a speech body the way OpenAI does; only WAV is produced, and saying otherwise is a 400."""
    model, text = _required_str(body, "model"), _required_str(body, "input")
    _required_str(body, "voice")
    if len(text) > SPEECH_MAX_CHARS:
        raise _bad_request(f"Invalid 'input': string too long, at most {SPEECH_MAX_CHARS} characters.", "input")
    if body.get("response_format", "wav") != "wav":
        raise _bad_request("Invalid 'response_format': this upstream produces 'wav' only.", "response_format")
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        raise _bad_request(f"Invalid 'speed': expected a number from 0.25 to 4.0 (got {speed!r}).", "speed")
    return SpeechCall(model, text, float(speed))


@lru_cache(maxsize=32)
def _tone(seconds: float) -> bytes:
    return tone(seconds, SPEECH_SAMPLE_RATE)


# -- answers --------------------------------------------------------------------------------------------------


def _head(model: str, kind: str) -> dict[str, Any]:
    """The fields every completion and chunk starts with, in OpenAI's order."""
    fingerprint = "fp_" + hashlib.sha256(model.encode()).hexdigest()[:10]
    return {
        "id": "chatcmpl-" + os.urandom(12).hex(),
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": fingerprint,
    }


def wrong_usage(usage: dict[str, Any], kind: str | None) -> dict[str, Any]:
    """``usage`` with its top-level counts broken as ``kind`` says (see ``X-Upstream-Usage``)."""
    if kind is None or kind == "empty-choices":
        return usage

    def broken(count: int) -> Any:
        if kind == "negative":
            return -count if count else -1
        return {"text": "n/a", "null": None, "huge": HUGE_COUNT}[kind]

    return {name: broken(value) if name.endswith("_tokens") else value for name, value in usage.items()}


def completion_body(call: ChatCall, answer: Answer, usage_fault: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None, "annotations": []}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish_reason}
    return {
        **_head(call.model, "chat.completion"),
        "choices": [] if usage_fault == "empty-choices" else [choice],
        "usage": wrong_usage(answer.usage(), usage_fault),
        "service_tier": "default",
    }


def chunk_bodies(call: ChatCall, answer: Answer, usage_fault: str | None = None) -> list[dict[str, Any]]:
    """The chunks of a streamed answer: role first, then the text word by word, the finish, then usage."""
    head = _head(call.model, "chat.completion.chunk")
    extra = {"usage": None} if call.include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [] if usage_fault == "empty-choices" else [choice], **extra}

    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    chunks += [chunk({"content": piece}) for piece in _PIECES.findall(answer.text)]
    chunks.append(chunk({}, answer.finish_reason))
    if call.include_usage:
        chunks.append({**head, "choices": [], "usage": wrong_usage(answer.usage(), usage_fault)})
    return chunks


def fake_vector(text: str, dimensions: int) -> list[float]:
    """A unit vector drawn from the text's digest: the same text always gets the same vector."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    raw = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]


async def _trickle(request: web.Request, body: bytes) -> web.StreamResponse:
    """A 200 whose body comes one byte a second, the bytes of ``body`` over and over, until the client leaves."""
    response = web.StreamResponse(status=200, headers={"content-type": "application/json"})
    await response.prepare(request)
    for index in range(TRICKLE_S):
        await response.write(body[index % len(body): index % len(body) + 1])
        await asyncio.sleep(1.0)
    return response


def _delta(chunk: Mapping[str, Any]) -> str:
    choices = chunk.get("choices") or [{}]
    return str(choices[0].get("delta", {}).get("content") or "")


# -- the server -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    host: str = "127.0.0.1"
    port: int = 0
    rpm: int = DEFAULT_RPM
    tpm: int = DEFAULT_TPM
    latency_ms: float = 0.0
    error_rate: float = 0.0
    seed: int = 0
    api_keys: tuple[str, ...] = ()
    models: tuple[str, ...] = DEFAULT_MODELS
    batch_delay_ms: float = DEFAULT_BATCH_DELAY_MS
    rate_429: float = 0.0  # share of chat requests refused with a 429 (Retry-After 1 s), drawn from ``seed``
    corrupt_items: tuple[str, ...] = ()  # item ids a packed answer gets wrong (see contentmill.testing.packed)
    profiles: tuple[ModelProfile, ...] = ()  # per-model latency and answer length
    cut_streams_after: int | None = None  # close every stream's connection after this many events
    wrong_usage: str | None = None  # a USAGE_FAULTS kind for every chat and embedding answer (X-Upstream-Usage)
    fault: str | None = None  # a FAULTS kind for every request that names none (X-Upstream-Fault)

    def profile(self, model: str | None) -> ModelProfile:
        found = [p for p in self.profiles if p.model == model]
        return found[-1] if found else ModelProfile(model or "")

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be from 0 to 65535 (got {self.port})")
        if self.rpm < 1 or self.tpm < 1:
            raise ConfigError(f"--rpm and --tpm must be at least 1 (got {self.rpm} and {self.tpm})")
        if self.latency_ms < 0:
            raise ConfigError(f"--latency-ms cannot be negative (got {self.latency_ms})")
        if self.batch_delay_ms < 0:
            raise ConfigError(f"--batch-delay-ms cannot be negative (got {self.batch_delay_ms})")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ConfigError(f"--error-rate is a share from 0 to 1 (got {self.error_rate})")
        if not 0.0 <= self.rate_429 <= 1.0:
            raise ConfigError(f"--rate-429 is a share from 0 to 1 (got {self.rate_429})")
        if self.cut_streams_after is not None and self.cut_streams_after < 1:
            raise ConfigError(f"--cut-streams-after is at least 1 event (got {self.cut_streams_after})")
        if any(not key for key in self.api_keys):
            raise ConfigError("--api-key cannot be empty")
        if self.fault is not None and self.fault not in FAULTS:
            raise ConfigError(f"--fault must be one of {', '.join(FAULTS)} (got {self.fault!r})")
        if self.wrong_usage is not None and self.wrong_usage not in USAGE_FAULTS:
            raise ConfigError(f"--wrong-usage must be one of {', '.join(USAGE_FAULTS)} (got {self.wrong_usage!r})")


@dataclass(slots=True)
class Exchange:
    """One request in flight: what the headers and the stats need to know about it."""

    request: web.Request
    request_id: str
    key: str | None = None
    model: str | None = None


class UpstreamServer:
    """The state and handlers of one fake upstream; ``app()`` wires them into an aiohttp application."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self.stats = Stats()
        self._keys = frozenset(config.api_keys)
        self._limits: dict[str, KeyLimits] = {}
        self._rng = random.Random(config.seed)
        self._items: Counter[str] = Counter()
        self._fresh_limit_headers = KeyLimits(Bucket(config.rpm), Bucket(config.tpm)).headers()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/v1/chat/completions", self._endpoint(self._chat))
        app.router.add_post("/v1/audio/speech", self._endpoint(self._speech))
        app.router.add_post("/v1/embeddings", self._endpoint(self._embeddings))
        app.router.add_get("/v1/models", self._endpoint(self._models))
        from contentmill.testing.batch_api import BatchApi  # it builds on this module

        BatchApi(self, self.config.batch_delay_ms / 1000).routes(app, self._endpoint)
        from contentmill.testing.visuals_api import VisualsApi  # it builds on this module

        VisualsApi(self).routes(app, self._endpoint)
        app.router.add_get("/stats", self._endpoint(self._stats))
        app.router.add_post("/stats/reset", self._endpoint(self._reset))
        app.router.add_route("*", "/{path:.*}", self._endpoint(self._not_found))
        return app

    def _endpoint(self, handler: Callable[[Exchange], Awaitable[web.StreamResponse]]) -> Endpoint:
        """Answers ApiError in OpenAI's shape and puts the request id and rate-limit headers on every answer."""

        async def endpoint(request: web.Request) -> web.StreamResponse:
            exchange = Exchange(request, "req_" + os.urandom(16).hex())
            try:
                response = await handler(exchange)
            except ApiError as error:
                self.stats.refused(exchange.key, exchange.model, error.status)
                response = error.response()
            if not response.prepared:
                response.headers.update(self._headers(exchange))
            return response

        return endpoint

    def _headers(self, exchange: Exchange) -> dict[str, str]:
        limits = self._limits.get(exchange.key) if exchange.key is not None else None
        headers = limits.headers() if limits is not None else dict(self._fresh_limit_headers)
        headers["x-request-id"] = exchange.request_id
        return headers

    def _authenticate(self, exchange: Exchange) -> str:
        scheme, _, key = exchange.request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code="invalid_api_key",
            )
        if self._keys and key not in self._keys:
            raise ApiError(401, f"Incorrect API key provided: {key_fingerprint(key)}.", code="invalid_api_key")
        exchange.key = key
        return key

    def _latency_s(self, exchange: Exchange) -> float:
        raw = exchange.request.headers.get("X-Upstream-Latency-Ms")
        if raw is None:
            latency_ms = self.config.profile(exchange.model).latency_ms
            return (self.config.latency_ms if latency_ms is None else latency_ms) / 1000
        try:
            ms = float(raw)
        except ValueError:
            ms = -1.0
        if not 0 <= ms <= 600_000:
            raise _bad_request(f"X-Upstream-Latency-Ms must be milliseconds from 0 to 600000 (got {raw!r}).")
        return ms / 1000

    async def _injected_failure(
        self, exchange: Exchange, latency_s: float, malformed: tuple[bytes, str]
    ) -> web.StreamResponse | None:
        """An injected fault or a random server error, decided before any capacity is taken; None if neither."""
        fault = exchange.request.headers.get("X-Upstream-Fault", self.config.fault)
        if fault is None:
            if self.config.error_rate and self._rng.random() < self.config.error_rate:
                await _sleep(latency_s)
                raise _server_error(500)
            return None
        fault = fault.strip().lower()
        if fault not in FAULTS:
            raise _bad_request(f"X-Upstream-Fault must be one of {', '.join(FAULTS)} (got {fault!r}).")
        if fault == "429":
            limit = self.config.rpm
            raise _rate_limited(exchange.model or "", "requests", limit, limit, 1, 1.0)
        if fault == "timeout":
            await asyncio.sleep(TIMEOUT_FAULT_S)
            return None
        if fault == "disconnect":
            if exchange.request.transport is not None:
                exchange.request.transport.close()
            return web.Response()
        if fault == "trickle":
            return await _trickle(exchange.request, malformed[0])
        await _sleep(latency_s)
        if fault == "malformed":
            body, content_type = malformed
            return web.Response(body=body, content_type=content_type)
        raise _server_error(int(fault))

    def _usage_fault(self, exchange: Exchange) -> str | None:
        """The kind of wrong usage this answer gets: X-Upstream-Usage, else --wrong-usage, else None."""
        raw = exchange.request.headers.get("X-Upstream-Usage")
        if raw is None:
            return self.config.wrong_usage
        kind = raw.strip().lower()
        if kind not in USAGE_FAULTS:
            raise _bad_request(f"X-Upstream-Usage must be one of {', '.join(USAGE_FAULTS)} (got {raw!r}).")
        return kind

    def _admit(self, key: str, model: str, tokens: int | None) -> None:
        """Take one request (and ``tokens``) from the key's buckets, or refuse with OpenAI's 429."""
        limits = self._limits.get(key)
        if limits is None:
            limits = self._limits[key] = KeyLimits(Bucket(self.config.rpm), Bucket(self.config.tpm))
        if tokens is not None and tokens > limits.tokens.limit:
            raise _too_large(model, limits.tokens.limit, tokens)
        now = time.monotonic()
        requests_wait = limits.requests.wait_s(1, now)
        tokens_wait = limits.tokens.wait_s(tokens, now) if tokens is not None else 0.0
        if requests_wait or tokens_wait:
            bucket, amount = (limits.requests, 1) if requests_wait else (limits.tokens, tokens or 0)
            kind = "requests" if requests_wait else "tokens"
            used = bucket.limit - bucket.remaining(now)
            raise _rate_limited(model, kind, bucket.limit, used, amount, max(requests_wait, tokens_wait))
        limits.requests.take(1, now)
        if tokens is not None:
            limits.tokens.take(tokens, now)

    async def _chat(self, exchange: Exchange) -> web.StreamResponse:
        key = self._authenticate(exchange)
        call = replace(parse_chat(await _json_body(exchange.request)), corrupt=frozenset(self.config.corrupt_items))
        exchange.model = call.model
        call = replace(call, verbosity=self.config.profile(call.model).tokens_factor)
        usage_fault = self._usage_fault(exchange)
        latency_s = self._latency_s(exchange)
        early = await self._injected_failure(exchange, latency_s, _MALFORMED_JSON)
        if early is not None:
            return early
        if self.config.rate_429 and self._rng.random() < self.config.rate_429:
            raise _rate_limited(call.model, "requests", self.config.rpm, self.config.rpm, 1, 1.0)
        prompt_tokens = call.prompt_tokens()
        self._admit(key, call.model, prompt_tokens + call.max_tokens)
        answer = call.answer(prompt_tokens)
        if call.stream:
            return await self._stream(exchange, key, call, answer, latency_s, usage_fault)
        await _sleep(latency_s)
        self.stats.served(key, call.model, answer.prompt_tokens, answer.completion_tokens)
        self._count_items(call)
        return web.json_response(completion_body(call, answer, usage_fault), dumps=_dumps)

    async def _stream(
        self, exchange: Exchange, key: str, call: ChatCall, answer: Answer, latency_s: float,
        usage_fault: str | None = None,
    ) -> web.StreamResponse:
        """Server-Sent Events as OpenAI sends them, the latency spread over the chunks (one write without it)."""
        chunks = chunk_bodies(call, answer, usage_fault)
        events = [b"data: " + _dumps(chunk).encode() + b"\n\n" for chunk in chunks]
        tokens = [count_tokens(_delta(chunk), call.encoding) for chunk in chunks]
        pause = latency_s / len(events)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        response.headers.update(self._headers(exchange))
        self.stats.served(key, call.model, answer.prompt_tokens, answer.completion_tokens)
        written = 0
        try:
            await response.prepare(exchange.request)
            cut = self.config.cut_streams_after
            if cut is not None and cut < len(events):  # a connection that drops mid-answer
                for event, count in zip(events[:cut], tokens[:cut], strict=True):
                    await response.write(event)
                    written += count
                self.stats.streamed(key, call.model, written, cut=True)
                if exchange.request.transport is not None:
                    exchange.request.transport.close()
                return response
            if pause > 0:
                for event, count in zip(events, tokens, strict=True):
                    await asyncio.sleep(pause)
                    await response.write(event)
                    written += count
                await response.write(_DONE)
            else:
                await response.write(b"".join(events) + _DONE)
                written = sum(tokens)
            await response.write_eof()
        except ConnectionError:  # the client went away mid-stream: nothing is left to answer
            self.stats.streamed(key, call.model, written, cut=True)
            return response
        except asyncio.CancelledError:
            self.stats.streamed(key, call.model, written, cut=True)
            raise
        self.stats.streamed(key, call.model, written, cut=False)
        return response

    async def _speech(self, exchange: Exchange) -> web.StreamResponse:
        key = self._authenticate(exchange)
        call = parse_speech(await _json_body(exchange.request))
        exchange.model = call.model
        latency_s = self._latency_s(exchange)
        early = await self._injected_failure(exchange, latency_s, _MALFORMED_WAV)
        if early is not None:
            return early
        self._admit(key, call.model, None)
        audio = await asyncio.to_thread(_tone, round(call.seconds, 4))
        await _sleep(latency_s)
        self.stats.served(key, call.model, characters=len(call.text))
        return web.Response(body=audio, content_type="audio/wav")

    async def _embeddings(self, exchange: Exchange) -> web.StreamResponse:
        key = self._authenticate(exchange)
        body = await _json_body(exchange.request)
        model = _required_str(body, "model")
        exchange.model = model
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            raise _bad_request("'input' must be a non-empty string or a list of them.", "input")
        dimensions = _optional_int(body, "dimensions", 1) or EMBEDDING_DIMENSIONS.get(model, 1536)
        usage_fault = self._usage_fault(exchange)
        latency_s = self._latency_s(exchange)
        early = await self._injected_failure(exchange, latency_s, _MALFORMED_JSON)
        if early is not None:
            return early
        tokens = sum(count_tokens(t, "cl100k_base") for t in texts)
        self._admit(key, model, tokens)
        await _sleep(latency_s)
        self.stats.served(key, model, tokens)
        data = [{"object": "embedding", "index": i, "embedding": fake_vector(t, dimensions)}
                for i, t in enumerate(texts)] if usage_fault != "empty-choices" else []
        usage = wrong_usage({"prompt_tokens": tokens, "total_tokens": tokens}, usage_fault)
        return web.json_response({"object": "list", "data": data, "model": model, "usage": usage}, dumps=_dumps)

    async def _models(self, exchange: Exchange) -> web.StreamResponse:
        self._authenticate(exchange)
        data = [
            {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "system"}
            for name in self.config.models
        ]
        return web.json_response({"object": "list", "data": data})

    def _count_items(self, call: ChatCall) -> None:
        """Count the items a packed request was answered for, in total and per id (``items``, ``item_ids``)."""
        for item in packed_items(call.messages[-1]["content"]) or ():
            self._items[str(item["id"])] += 1

    def _stats_body(self) -> dict[str, Any]:
        return {**self.stats.as_dict(), "items": sum(self._items.values()), "item_ids": dict(self._items)}

    async def _stats(self, exchange: Exchange) -> web.StreamResponse:
        return web.json_response(self._stats_body())

    async def _reset(self, exchange: Exchange) -> web.StreamResponse:
        self.stats.reset()
        self._items.clear()
        return web.json_response(self._stats_body())

    async def _not_found(self, exchange: Exchange) -> web.StreamResponse:
        request = exchange.request
        raise ApiError(404, f"Invalid URL ({request.method} {request.path})")


# -- running --------------------------------------------------------------------------------------------------


def base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def _announce(url: str) -> None:
    print(f"ready {url}", flush=True)


@contextmanager
def _stop_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGTERM or SIGINT, for as long as the block runs."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def serve(config: UpstreamConfig, on_ready: Callable[[str], None] = _announce) -> None:
    """Listen until SIGTERM or SIGINT; ``on_ready`` gets the base URL once the socket is bound."""
    runner = web.AppRunner(
        UpstreamServer(config).app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
    )
    get_encoding("o200k_base")  # current OpenAI models' encoding, loaded now rather than on the first request
    await runner.setup()
    try:
        with _stop_signals() as stop:
            await web.TCPSite(runner, config.host, config.port, backlog=1024).start()
            on_ready(base_url(config.host, runner.addresses[0][1]))
            await stop.wait()
    finally:
        await runner.cleanup()


def parse_args(argv: Sequence[str] | None = None) -> UpstreamConfig:
    parser = argparse.ArgumentParser(
        prog="python -m contentmill.testing.upstream",
        description="A fake OpenAI-compatible API server with usage, rate limits, latency and faults.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--rpm", type=int, default=DEFAULT_RPM, help="requests per minute per API key")
    parser.add_argument("--tpm", type=int, default=DEFAULT_TPM, help="tokens per minute per API key")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="how long each answer takes")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered with HTTP 500")
    parser.add_argument("--seed", type=int, default=0, help="seed of the error rate's draws")
    parser.add_argument("--rate-429", type=float, default=0.0, help="share of chat requests refused with a 429")
    parser.add_argument("--corrupt-item", action="append", default=[],
                        help="item id a packed answer gets wrong when asked with others (repeatable)")
    parser.add_argument("--api-key", action="append", default=[], help="accepted key (repeatable; default: any)")
    parser.add_argument("--models", action="append", default=[], help="more models to list (comma-separated)")
    parser.add_argument("--batch-delay-ms", type=float, default=DEFAULT_BATCH_DELAY_MS,
                        help="how long a Batch API batch runs before it completes")
    parser.add_argument("--cut-streams-after", type=int, default=None,
                        help="close each stream's connection after this many events (a dropped connection)")
    parser.add_argument("--fault", choices=FAULTS, default=None,
                        help="inject this fault into every request that names none (as X-Upstream-Fault)")
    parser.add_argument("--wrong-usage", choices=USAGE_FAULTS, default=None,
                        help="answer every chat and embedding request with this kind of wrong usage block")
    parser.add_argument("--model-profile", action="append", default=[],
                        help="NAME=LATENCY_MS:TOKENS_FACTOR: one model's latency and answer length (repeatable)")
    args = parser.parse_args(argv)
    extra = [name.strip() for names in args.models for name in names.split(",") if name.strip()]
    try:
        return UpstreamConfig(
            host=args.host,
            port=args.port,
            rpm=args.rpm,
            tpm=args.tpm,
            latency_ms=args.latency_ms,
            error_rate=args.error_rate,
            seed=args.seed,
            api_keys=tuple(args.api_key),
            models=tuple(dict.fromkeys([*DEFAULT_MODELS, *extra])),
            batch_delay_ms=args.batch_delay_ms,
            rate_429=args.rate_429,
            corrupt_items=tuple(args.corrupt_item),
            profiles=tuple(ModelProfile.parse(p) for p in args.model_profile),
            cut_streams_after=args.cut_streams_after,
            wrong_usage=args.wrong_usage,
            fault=args.fault,
        )
    except ConfigError as exc:
        parser.error(str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        print(f"upstream: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run as the package module, not as __main__, so that batch_api.py (which imports it) shares its classes.
    from contentmill.testing import upstream as _upstream

    sys.exit(_upstream.main())
