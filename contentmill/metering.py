"""Usage in the units providers bill (tokens, characters, seconds, images) and offline token counting.

OpenAI's BPE ranks (cl100k_base, o200k_base) come from the ``quicktok-v1`` package's bundled vocabularies,
converted once into tiktoken's cache and checked against the sha256 tiktoken itself expects, so token counts
are tiktoken's own, without a download.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
import tiktoken

from contentmill.errors import ConfigError
from contentmill.files import write_atomic

# name -> (quicktok vocab file, tiktoken's URL for the file, tiktoken's expected sha256)
_ENCODINGS = {
    "cl100k_base": (
        "cl100k.vocab",
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "o200k.vocab",
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}


@dataclass(frozen=True, slots=True)
class Usage:
    """What one call consumed. ``estimated`` is true when a count is ours rather than the provider's."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    characters: int = 0
    seconds: float = 0.0
    images: int = 0
    estimated: bool = False

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            characters=self.characters + other.characters,
            seconds=self.seconds + other.seconds,
            images=self.images + other.images,
            estimated=self.estimated or other.estimated,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_estimate(self, estimated: bool) -> Usage:
        return replace(self, estimated=estimated)


# How far a vendor's token counts may go past what the gateway counted before they are refused as not this
# call's (the call is then billed at its reserved estimate): input within the model's context window, or within
# 10% + 32 tokens of our count (vendors frame messages their own way) where that is more or no window is known;
# output within max_tokens + 16 (an end-of-turn token or two counted past the limit).
INPUT_SLACK_SHARE = 0.10
INPUT_SLACK_TOKENS = 32
OUTPUT_SLACK_TOKENS = 16
MAX_FIGURES_CHARS = 200  # the vendor's usage block kept in a ledger row is cut to this length


@dataclass(frozen=True, slots=True)
class ReportedUsage:
    """A vendor's usage block as it came: ``figures`` is the block as sent (short enough for a ledger row);
    ``usage`` its counts when each is a non-negative integer, else None with ``problem`` saying what is wrong."""

    figures: str
    usage: Usage | None = None
    problem: str | None = None

    def __post_init__(self) -> None:
        if (self.usage is None) == (self.problem is None):
            raise ValueError("a reported usage has either its counts or a problem")


def usage_figures(block: Any) -> str:
    """A vendor's usage block as compact, printable JSON of at most MAX_FIGURES_CHARS characters."""
    try:
        text = orjson.dumps(block, default=repr).decode()
    except orjson.JSONEncodeError:  # keys that are not text, integers past 64 bits, circular structures
        try:
            text = json.dumps(block, separators=(",", ":"), default=repr)
        except ValueError:  # a circular structure: only hand-built data, never decoded JSON
            text = repr(block)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= MAX_FIGURES_CHARS else text[: MAX_FIGURES_CHARS - 3] + "..."


def read_count(block: Mapping[str, Any], name: str, *, required: bool = True) -> tuple[int, str | None]:
    """``block[name]`` as a token count, or 0 and what is wrong with it (a missing optional count is 0)."""
    if name not in block:
        return 0, f"{name} is missing" if required else None
    value = block[name]
    if type(value) is int and value >= 0:  # the common case, checked first
        return value, None
    if value is None:
        return 0, f"{name} is null"
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0, f"{name} is not a number ({shown})"
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return 0, f"{name} is not a whole number ({shown})"
    if value < 0:
        return 0, f"{name} is negative ({shown})"
    return int(value), None


def usage_ceiling(estimate: Usage, context_window: int | None = None, windows: int = 1) -> Usage:
    """The most a call reserved at ``estimate`` (input counted, output its max_tokens) could have used; an
    embedding call of several texts has a context window per text (``windows``)."""
    counted = math.ceil(round(estimate.input_tokens * (1 + INPUT_SLACK_SHARE), 6)) + INPUT_SLACK_TOKENS
    max_input = max(counted, (context_window or 0) * windows)
    return Usage(input_tokens=max_input, output_tokens=estimate.output_tokens + OUTPUT_SLACK_TOKENS,
                 cached_input_tokens=max_input)


def usage_problem(usage: Usage, ceiling: Usage) -> str | None:
    """Why ``usage`` cannot be what a call bounded by ``ceiling`` used, or None when it can."""
    for name in ("input_tokens", "output_tokens", "cached_input_tokens", "characters", "images"):
        if getattr(usage, name) < 0:
            return f"{name} is negative ({getattr(usage, name)})"
    if not (math.isfinite(usage.seconds) and usage.seconds >= 0):
        return f"seconds is not a duration ({usage.seconds})"
    if usage.input_tokens > ceiling.input_tokens:
        return (f"{usage.input_tokens} input tokens is more than the call could have sent "
                f"(at most {ceiling.input_tokens})")
    if usage.output_tokens > ceiling.output_tokens:
        allowed = ceiling.output_tokens - OUTPUT_SLACK_TOKENS
        return (f"{usage.output_tokens} output tokens is more than max_tokens {allowed} allows "
                f"(at most {ceiling.output_tokens})")
    if usage.cached_input_tokens > usage.input_tokens:
        return f"{usage.cached_input_tokens} cached input tokens is more than its {usage.input_tokens} input tokens"
    return None


def _tiktoken_cache_dir() -> Path:
    configured = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR"))
    if configured == "":
        raise ConfigError(
            "TIKTOKEN_CACHE_DIR is set to an empty string, which makes tiktoken download its files; "
            "unset it or point it at a writable directory"
        )
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "data-gym-cache"


def _vocab_to_tiktoken(raw: bytes) -> bytes:
    """quicktok's vocab (u32 count, then u16 length + bytes + u32 rank each) as a .tiktoken file."""
    (count,) = struct.unpack_from("<I", raw, 0)
    offset, lines = 4, []
    for _ in range(count):
        (length,) = struct.unpack_from("<H", raw, offset)
        token = raw[offset + 2 : offset + 2 + length]
        (rank,) = struct.unpack_from("<I", raw, offset + 2 + length)
        offset += 6 + length
        lines.append(base64.b64encode(token) + b" " + str(rank).encode() + b"\n")
    return b"".join(lines)


def install_offline_encoding(name: str) -> Path:
    """Put tiktoken's file for ``name`` into tiktoken's cache from bundled data; verified by sha256."""
    try:
        vocab_file, url, expected = _ENCODINGS[name]
    except KeyError:
        raise ConfigError(f"no offline data for encoding {name!r}; known: {', '.join(_ENCODINGS)}") from None
    cache_dir = _tiktoken_cache_dir()
    target = cache_dir / hashlib.sha1(url.encode()).hexdigest()
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == expected:
        return target
    raw = files("quicktok").joinpath("data", vocab_file).read_bytes()
    content = _vocab_to_tiktoken(raw)
    if hashlib.sha256(content).hexdigest() != expected:
        raise ConfigError(f"bundled BPE data for {name} does not match tiktoken's checksum; reinstall quicktok-v1")
    write_atomic(target, content)
    return target


@lru_cache(maxsize=8)
def get_encoding(name: str) -> tiktoken.Encoding:
    """A tiktoken encoding that never needs the network for the encodings we bundle."""
    if name in _ENCODINGS:
        install_offline_encoding(name)
    return tiktoken.get_encoding(name)


def encoding_name_for(model: str) -> str:
    """The tiktoken encoding of an OpenAI-family model name (bare, without 'provider:')."""
    bare = model.split(":", 1)[-1].lower()
    if bare.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")):
        return "o200k_base"
    return "cl100k_base"


def count_tokens(text: str, encoding: str = "o200k_base") -> int:
    """Tokens of ``text`` in ``encoding`` (special-token text counted as ordinary text)."""
    return len(get_encoding(encoding).encode_ordinary(text))


# OpenAI's documented accounting for chat input: each message costs 3 tokens of framing, and the reply is
# primed with 3 more.
TOKENS_PER_MESSAGE = 3
TOKENS_REPLY_PRIMING = 3


def count_message_tokens(messages: Iterable[Mapping[str, str]], encoding: str = "o200k_base") -> int:
    """Input tokens of a chat request the way OpenAI bills it."""
    enc = get_encoding(encoding)
    total = TOKENS_REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key in ("role", "content", "name"):
            value = message.get(key)
            if value:
                total += len(enc.encode_ordinary(value))
    return total


TokenCounter = Callable[[str], int]
