"""Deterministic fakes for every modality: same input, same output, usage reported like a real provider.

Used by tests and dry runs, and by the fake OpenAI-compatible upstream (``contentmill.testing.upstream``).
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import AsyncIterator, Callable, Sequence

from contentmill.audio import CHARS_PER_SECOND, tone, wav_info
from contentmill.metering import Usage, count_message_tokens, count_tokens, get_encoding
from contentmill.providers.base import ImageResult, SpeechResult, TextChunk, TextResult
from contentmill.requests import ImageRequest, SpeechRequest, TextRequest

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


def fake_png(prompt: str, width: int, height: int) -> bytes:
    """A PNG drawn from ``prompt`` alone: a gradient of two colours and a shape (disc, square, ring, triangle or
    stripes) in a third, so tests can tell images of different prompts apart by their pixels."""
    from PIL import Image, ImageDraw  # Pillow comes with the media layer; only fakes of images need it here

    digest = hashlib.sha256(prompt.encode()).digest()
    top, bottom = (digest[0], digest[1], digest[2]), (digest[3], digest[4], digest[5])
    ink = (255 - digest[0], 255 - digest[1], 255 - digest[2])
    mask = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), mask)
    draw = ImageDraw.Draw(image)
    side = min(width, height)
    cx, cy = width * (0.3 + digest[6] / 640), height * (0.3 + digest[7] / 640)
    r = side * (0.18 + digest[8] / 1024)
    box = (cx - r, cy - r, cx + r, cy + r)
    match digest[9] % 5:
        case 0:
            draw.ellipse(box, fill=ink)
        case 1:
            draw.rectangle(box, fill=ink)
        case 2:
            draw.ellipse(box, outline=ink, width=max(2, round(r / 4)))
        case 3:
            draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=ink)
        case _:
            step = max(4, round(side / 12))
            for x in range(0, width, 2 * step):
                draw.rectangle((x, 0, x + step - 1, height), fill=ink)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class FakeImageModel:
    """An image model that draws ``fake_png`` of the prompt at the size asked, one image per ``n``."""

    def __init__(self, name: str = "fake:image") -> None:
        self.name = name
        self.calls: list[ImageRequest] = []

    async def imagine(self, request: ImageRequest) -> ImageResult:
        started = time.perf_counter()
        self.calls.append(request)
        width, height = request.pixels
        images = tuple(fake_png(f"{request.prompt}#{i}" if i else request.prompt, width, height)
                       for i in range(request.n))
        return ImageResult(images, self.name, Usage(images=request.n), latency_s=time.perf_counter() - started)

    async def aclose(self) -> None:
        return None
