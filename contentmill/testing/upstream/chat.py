"""Chat completions at the fake upstream: a request checked the way OpenAI checks it, its answer, and the bodies
it is sent in (a completion, or a stream's chunks), usage included; the online endpoint and the Batch API both
answer with them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contentmill.metering import count_message_tokens, count_tokens, encoding_name_for, get_encoding
from contentmill.providers.fake import fake_reply
from contentmill.testing.packed import packed_items, packed_reply, word_limit
from contentmill.testing.upstream.common import optional_int, required_str
from contentmill.testing.upstream.errors import bad_request

DEFAULT_MAX_TOKENS = 4096  # output bound and TPM charge of a chat request that names no max_tokens
HUGE_COUNT = 10**12
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_PIECES = re.compile(r"\s*\S+|\s+")  # words with their leading space: they join back to the exact text


def _content_text(content: Any, where: str) -> str:
    """A message's text: a string, text parts joined, or nothing (an assistant turn with tool calls)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        return "".join(str(part.get("text", "")) for part in content if part.get("type") == "text")
    raise bad_request(f"Invalid '{where}': expected a string or an array of content parts.", where, "invalid_type")


def _message(index: int, raw: Any) -> dict[str, str]:
    where = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise bad_request(f"Invalid '{where}': expected an object.", where, "invalid_type")
    role = raw.get("role")
    if role not in _ROLES:
        raise bad_request(f"Invalid '{where}.role': expected one of {', '.join(sorted(_ROLES))}.", f"{where}.role")
    message = {"role": role, "content": _content_text(raw.get("content"), f"{where}.content")}
    if isinstance(raw.get("name"), str):
        message["name"] = raw["name"]
    return message


def _stop_sequences(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise bad_request("Invalid 'stop': expected a string or an array of up to 4 strings.", "stop")
    return tuple(stops)


def _json_mode(value: Any) -> bool:
    kind = value.get("type") if isinstance(value, dict) else value
    if kind is None or kind == "text":
        return False
    if kind == "json_object":
        return True
    raise bad_request(
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


def _truncate(text: str, max_tokens: int, encoding: str) -> tuple[str, str]:
    ids = get_encoding(encoding).encode_ordinary(text)
    if len(ids) <= max_tokens:
        return text, "stop"
    return get_encoding(encoding).decode(ids[:max_tokens]), "length"


def parse_chat(body: Mapping[str, Any]) -> ChatCall:
    """Check a chat completion body the way OpenAI does; a wrong field is a 400 that names it."""
    model = required_str(body, "model")
    raw = body.get("messages")
    if raw is None:
        raise bad_request("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    if not isinstance(raw, list) or not raw:
        raise bad_request("Invalid 'messages': expected a non-empty array of messages.", "messages", "invalid_type")
    if body.get("n", 1) != 1:
        raise bad_request("Invalid 'n': this upstream answers one choice per request (n=1).", "n")
    stream = body.get("stream") is True
    options = body.get("stream_options")
    if options is not None and not stream:
        raise bad_request("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")
    max_tokens = optional_int(body, "max_completion_tokens", 1) or optional_int(body, "max_tokens", 1)
    call = ChatCall(
        model=model,
        messages=tuple(_message(i, m) for i, m in enumerate(raw)),
        max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
        stream=stream,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        json_mode=_json_mode(body.get("response_format")),
        stop=_stop_sequences(body.get("stop")),
        seed=optional_int(body, "seed", -(2**63)) or 0,
    )
    if call.json_mode and "json" not in call.text().lower():
        raise bad_request(
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
            "messages",
        )
    return call


# -- answers ----------------------------------------------------------------------------------------------------


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


def delta_text(chunk: Mapping[str, Any]) -> str:
    """The text a stream's chunk carries."""
    choices = chunk.get("choices") or [{}]
    return str(choices[0].get("delta", {}).get("content") or "")


