"""A streamed text generation as the gateway hands it out: the pieces as they come, the bill when it ends.

``Gateway.stream`` returns a ``TextStream`` only once the first piece has arrived, so every failure before the
first byte is retried, falls back or raises like ``Gateway.generate``. After that the stream is this model's:
it ends in exactly one of three ways, each settled once and written as one ledger row:

- the upstream finishes: billed from its final usage (asked for on every stream), or from counting the
  streamed text, marked estimated, when the vendor sent none; a final usage that cannot be this call's is
  billed at the reserved estimate instead, flagged, as ``Gateway.generate`` does;
- the caller stops early (``aclose``, or a client that disconnects): billed for what the upstream produced
  until then, counted and marked estimated;
- the upstream fails mid-stream: the same count, recorded as an error of that kind; the error is raised.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from contentmill.errors import ProviderError
from contentmill.gateway.generation import Generation
from contentmill.metering import ReportedUsage, Usage
from contentmill.providers.base import TextChunk


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """How a stream ended: the text produced, the vendor's usage when it sent one, and any failure."""

    text: str
    usage: Usage | None = None
    finish_reason: str | None = None
    request_id: str | None = None
    error: ProviderError | None = None
    closed_early: bool = False
    reported: ReportedUsage | None = None  # the vendor's final usage block as sent


class TextStream:
    """The pieces of one streamed generation; ``generation`` is set once the stream has ended and been billed."""

    def __init__(self, pieces: AsyncIterator[TextChunk] | None, first: TextChunk | None,
                 finish: Callable[[StreamEnd], Awaitable[Generation]], *, model: str,
                 cached: Generation | None = None, request_id: str | None = None) -> None:
        self.model = model
        self.request_id = request_id
        self.generation: Generation | None = cached
        self._pieces = pieces
        self._first = first
        self._finish = finish
        self._parts: list[str] = []
        self._usage: Usage | None = None
        self._reported: ReportedUsage | None = None
        self._finish_reason: str | None = None
        self._ended = cached is not None
        self._iterating = False

    @classmethod
    def replay(cls, generation: Generation) -> TextStream:
        """A stream of an answer the cache already holds: one piece, nothing billed."""

        async def never(end: StreamEnd) -> Generation:
            return generation

        stream = cls(None, TextChunk(generation.text or "", generation.usage, generation.finish_reason,
                                     generation.request_id), never, model=generation.model,
                     request_id=generation.request_id)
        stream.generation = generation
        return stream

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def __aiter__(self) -> AsyncIterator[TextChunk]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[TextChunk]:
        if self._iterating:
            raise RuntimeError("a TextStream is read once")
        self._iterating = True
        try:
            if self._first is not None:
                first, self._first = self._first, None
                self._take(first)
                yield first
            if self._pieces is not None:
                async for piece in self._pieces:
                    self._take(piece)
                    yield piece
        except ProviderError as error:
            await self._end(StreamEnd(self.text, None, None, self.request_id, error=error))
            raise
        except BaseException:
            await self._end(StreamEnd(self.text, None, None, self.request_id, closed_early=True))
            raise
        await self._end(StreamEnd(self.text, self._usage, self._finish_reason, self.request_id,
                                  reported=self._reported))

    def _take(self, piece: TextChunk) -> None:
        if piece.delta:
            self._parts.append(piece.delta)
        if piece.usage is not None:
            self._usage = piece.usage
        if piece.reported is not None:
            self._reported = piece.reported
        if piece.finish_reason is not None:
            self._finish_reason = piece.finish_reason
        self.request_id = piece.request_id or self.request_id

    async def _end(self, end: StreamEnd) -> None:
        if self._ended:
            return
        self._ended = True
        pieces, self._pieces = self._pieces, None
        if pieces is not None and (end.error is not None or end.closed_early):
            closer = getattr(pieces, "aclose", None)
            if closer is not None:
                await closer()
        self.generation = await self._finish(end)

    async def aclose(self) -> None:
        """Stop reading: what the upstream produced so far is billed (once; later calls do nothing)."""
        await self._end(StreamEnd(self.text, None, None, self.request_id, closed_early=True))

    async def collect(self) -> Generation:
        """Read the rest and return the billed generation."""
        async for _ in self:
            pass
        assert self.generation is not None
        return self.generation

    async def __aenter__(self) -> TextStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
