"""One protocol per modality. Every provider (remote API, local engine, fake) implements one of these.

Providers report usage the way their vendor bills it; where they cannot (a local engine's own count), the
``Usage.estimated`` flag says so. Wrappers (rate limits, budgets, fallbacks) share these interfaces.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from contentmill.metering import ReportedUsage, Usage
from contentmill.requests import (
    EmbeddingRequest,
    ImageRequest,
    SpeechRequest,
    TextRequest,
)


@dataclass(frozen=True, slots=True)
class TextResult:
    text: str
    model: str  # "provider:model"
    usage: Usage
    finish_reason: str = "stop"
    request_id: str | None = None
    latency_s: float = 0.0
    reported: ReportedUsage | None = None  # the vendor's usage block as sent, when it sent one


@dataclass(frozen=True, slots=True)
class TextChunk:
    """One piece of a streamed answer; the last chunk carries ``usage`` and ``finish_reason``."""

    delta: str
    usage: Usage | None = None
    finish_reason: str | None = None
    request_id: str | None = None
    reported: ReportedUsage | None = None  # on the last chunk: the vendor's usage block as sent, if any


@dataclass(frozen=True, slots=True)
class SpeechResult:
    audio: bytes  # a complete WAV file
    model: str
    usage: Usage  # characters billed, seconds of audio
    sample_rate: int
    duration_s: float
    request_id: str | None = None
    latency_s: float = 0.0
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    vectors: list[list[float]]  # one per input, in order
    model: str
    usage: Usage
    request_id: str | None = None
    latency_s: float = 0.0
    reported: ReportedUsage | None = None  # the vendor's usage block as sent, when it sent one


@dataclass(frozen=True, slots=True)
class ImageResult:
    images: tuple[bytes, ...]  # encoded images (PNG unless the vendor says otherwise), one per image made
    model: str
    usage: Usage  # images made
    request_id: str | None = None
    latency_s: float = 0.0
    revised_prompt: str | None = None


@runtime_checkable
class TextModel(Protocol):
    """Generates text. ``name`` is the catalog name, 'provider:model'."""

    name: str

    async def complete(self, request: TextRequest) -> TextResult: ...

    def stream(self, request: TextRequest) -> AsyncIterator[TextChunk]: ...

    def count_tokens(self, text: str) -> int: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class EmbeddingModel(Protocol):
    """Turns texts into vectors."""

    name: str

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult: ...

    def count_tokens(self, text: str) -> int: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class SpeechModel(Protocol):
    """Turns text into speech (WAV bytes)."""

    name: str

    async def synthesize(self, request: SpeechRequest) -> SpeechResult: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ImageModel(Protocol):
    """Turns a prompt into images."""

    name: str

    async def imagine(self, request: ImageRequest) -> ImageResult: ...

    async def aclose(self) -> None: ...
