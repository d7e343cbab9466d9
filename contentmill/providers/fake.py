"""Deterministic fakes for every modality: same input, same output, usage reported like a real provider.

Used by tests and dry runs, and by the fake OpenAI-compatible upstream (``contentmill.testing.upstream``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable, Sequence

from contentmill.audio import CHARS_PER_SECOND, tone, wav_info
from contentmill.metering import Usage, count_message_tokens, count_tokens, get_encoding
from contentmill.providers.base import SpeechRequest, SpeechResult, TextChunk, TextRequest, TextResult

_WORDS = (
    "clear bright simple useful quiet steady light warm fresh careful honest quick small strong gentle "
    "practical modern classic durable smooth compact reliable natural crisp bold calm daily easy"
).split()


def fake_reply(text: str, max_tokens: int, seed: int = 0, encoding: str = "o200k_base") -> tuple[str, str]:
    """A deterministic answer to ``text`` of at most ``max_tokens`` tokens, and its finish reason."""
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    wanted = 8 + digest[0] % 40
    words = [_WORDS[digest[(i % 31) + 1] % len(_WORDS)] for i in range(wanted)]
    reply = "Sure. " + " ".join(words) + "."
    ids = get_encoding(encoding).encode_ordinary(reply)
    if len(ids) <= max_tokens:
        return reply, "stop"
    return get_encoding(encoding).decode(ids[:max_tokens]), "length"


Responder = Callable[[TextRequest], str]


class FakeTextModel:
    """A text model that answers from ``responses`` (in turn, or computed) or with ``fake_reply``.

    It counts usage with tiktoken as OpenAI would and records every request in ``calls``.
    """

    def __init__(
        self,
        name: str = "fake:text",
        responses: Sequence[str] | Responder | None = None,
        *,
        encoding: str = "o200k_base",
        seed: int = 0,
    ) -> None:
        self.name = name
        self.encoding = encoding
        self.seed = seed
        self._responses = responses
        self.calls: list[TextRequest] = []

    def count_tokens(self, text: str) -> int:
        return count_tokens(text, self.encoding)

    def _answer(self, request: TextRequest) -> tuple[str, str]:
        if callable(self._responses):
            return self._responses(request), "stop"
        if self._responses:
            return self._responses[(len(self.calls) - 1) % len(self._responses)], "stop"
        return fake_reply(request.input_text(), request.max_tokens, self.seed, self.encoding)

    async def complete(self, request: TextRequest) -> TextResult:
        started = time.perf_counter()
        self.calls.append(request)
        text, finish = self._answer(request)
        usage = Usage(
            input_tokens=count_message_tokens(request.as_messages(), self.encoding),
            output_tokens=self.count_tokens(text),
        )
        digest = hashlib.sha256(request.input_text().encode()).hexdigest()[:12]
        return TextResult(text, self.name, usage, finish, f"fake-{digest}", time.perf_counter() - started)

    async def stream(self, request: TextRequest) -> AsyncIterator[TextChunk]:
        result = await self.complete(request)
        words = result.text.split(" ")
        for i, word in enumerate(words):
            last = i == len(words) - 1
            yield TextChunk(
                delta=word if i == 0 else " " + word,
                usage=result.usage if last else None,
                finish_reason=result.finish_reason if last else None,
                request_id=result.request_id,
            )

    async def aclose(self) -> None:
        return None


class FakeSpeechModel:
    """A speech model that returns a tone as long as the text would take to say."""

    def __init__(self, name: str = "fake:speech", sample_rate: int = 22050) -> None:
        self.name = name
        self.sample_rate = sample_rate
        self.calls: list[SpeechRequest] = []

    async def synthesize(self, request: SpeechRequest) -> SpeechResult:
        started = time.perf_counter()
        self.calls.append(request)
        seconds = max(0.2, len(request.text) / CHARS_PER_SECOND / request.speed)
        audio = tone(seconds, self.sample_rate)
        duration = wav_info(audio).duration_s
        usage = Usage(characters=len(request.text), seconds=duration)
        return SpeechResult(audio, self.name, usage, self.sample_rate, duration,
                            latency_s=time.perf_counter() - started)

    async def aclose(self) -> None:
        return None
