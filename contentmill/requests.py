"""The requests every layer speaks: what a flow asks the gateway for, and the gateway asks a provider.

A request holds only what determines the answer (and so its cache key and its price); who asks and what may
be spent are the gateway's tags and limits, never part of the request. Each checks itself when made, so a bad
one fails where it is written, with a message that says what to change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["IMAGE_SIZE", "EmbeddingRequest", "ImageRequest", "Message", "Role", "SpeechRequest", "TextRequest"]

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class TextRequest:
    """A text generation. ``prompt`` asks a completion model directly; ``messages`` ask a chat model.

    Exactly one of them is given. ``max_tokens`` bounds the output and so the cost of the call.
    """

    messages: tuple[Message, ...] = ()
    prompt: str | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    response_format: Literal["text", "json"] = "text"

    def __post_init__(self) -> None:
        if bool(self.messages) == (self.prompt is not None):
            raise ValueError("give either messages or prompt, not both and not neither")
        if self.max_tokens <= 0:
            raise ValueError(f"max_tokens must be positive (got {self.max_tokens})")

    @classmethod
    def chat(cls, user: str, *, system: str | None = None, **kwargs: Any) -> TextRequest:
        messages = ((Message("system", system),) if system else ()) + (Message("user", user),)
        return cls(messages=messages, **kwargs)

    def as_messages(self) -> list[dict[str, str]]:
        """Chat messages for the request; a bare prompt becomes one user message."""
        if self.messages:
            return [m.as_dict() for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]

    def input_text(self) -> str:
        return self.prompt if self.prompt is not None else "\n".join(m.content for m in self.messages)


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    text: str
    voice: str = "default"
    language: str = "en"
    speed: float = 1.0
    format: Literal["wav"] = "wav"

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("speech needs some text")
        if not 0.25 <= self.speed <= 4.0:
            raise ValueError(f"speed must be between 0.25 and 4.0 (got {self.speed})")


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """Texts to embed in one call; billed by their input tokens."""

    inputs: tuple[str, ...]
    dimensions: int | None = None

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("give at least one text to embed")
        if any(not isinstance(text, str) or not text for text in self.inputs):
            raise ValueError("every text to embed is a non-empty string")
        if self.dimensions is not None and self.dimensions < 1:
            raise ValueError(f"dimensions must be positive (got {self.dimensions})")


IMAGE_SIZE = re.compile(r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$")


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """Images made from a prompt, billed per image. ``size`` is WIDTHxHEIGHT as the vendor names it;
    ``quality`` is the vendor's word for it (None: the vendor's default), and part of the price."""

    prompt: str
    size: str = "1024x1024"
    quality: str | None = None
    n: int = 1

    def __post_init__(self) -> None:
        if not self.prompt.strip():
            raise ValueError("an image needs a prompt")
        if not IMAGE_SIZE.match(self.size):
            raise ValueError(f"size is WIDTHxHEIGHT in pixels, e.g. 1024x1536 (got {self.size!r})")
        if not 1 <= self.n <= 10:
            raise ValueError(f"n is from 1 to 10 images (got {self.n})")

    @property
    def pixels(self) -> tuple[int, int]:
        width, _, height = self.size.partition("x")
        return int(width), int(height)
