"""Word marks inside a WAV file: where each word of the spoken text starts, as the file's own cue points.

A speech engine that knows when it says each word (espeak-ng) writes that into the WAV it returns: one RIFF
``cue `` point per word at the word's first sample, labelled with the word (``LIST``/``adtl``/``labl``, the
markers audio editors show) and noted with the word's characters in the text (``note``: "start end"). The audio
goes through the gateway, its cache and the store as bytes, so the timings travel with it; players, ffmpeg and
Python's ``wave`` skip the chunks. A WAV without them has no marks.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import NamedTuple


class WordMark(NamedTuple):
    """A word of the spoken text, characters ``[start, end)``, and the second of the audio it starts at."""

    start: int
    end: int
    at_s: float


def _walk(data: bytes, offset: int) -> Iterator[tuple[bytes, bytes]]:
    """The (id, body) of each RIFF chunk in ``data`` from ``offset`` on."""
    while offset + 8 <= len(data):
        name, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        yield name, data[offset + 8 : offset + 8 + size]
        offset += 8 + size + (size & 1)


def _chunks(wav: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The chunks of a RIFF WAVE file; nothing for anything else."""
    if len(wav) >= 12 and wav[:4] == b"RIFF" and wav[8:12] == b"WAVE":
        yield from _walk(wav, 12)


def _chunk(name: bytes, body: bytes) -> bytes:
    return name + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1)


def with_word_marks(wav: bytes, text: str, marks: Sequence[WordMark]) -> bytes:
    """``wav`` with a cue point per mark, labelled with its word of ``text`` (the file unchanged without marks)."""
    rate = _sample_rate(wav)
    named = [(number, mark) for number, mark in enumerate(marks, start=1) if text[mark.start : mark.end].strip()]
    if not named or rate is None:
        return wav
    points = b"".join(
        struct.pack("<II4sIII", number, round(mark.at_s * rate), b"data", 0, 0, round(mark.at_s * rate))
        for number, mark in named
    )
    labels = b"".join(
        _chunk(b"labl", struct.pack("<I", number) + text[mark.start : mark.end].encode("utf-8") + b"\0")
        + _chunk(b"note", struct.pack("<I", number) + f"{mark.start} {mark.end}".encode() + b"\0")
        for number, mark in named
    )
    extra = _chunk(b"cue ", struct.pack("<I", len(named)) + points) + _chunk(b"LIST", b"adtl" + labels)
    body = wav[8:] + extra
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _sample_rate(wav: bytes) -> int | None:
    for name, body in _chunks(wav):
        if name == b"fmt " and len(body) >= 8:
            rate: int = struct.unpack_from("<I", body, 4)[0]
            return rate or None
    return None


def word_marks(wav: bytes, text: str) -> tuple[WordMark, ...]:
    """The marks of ``wav`` as words of ``text``, in the order they were written; () for a WAV without them.
    A mark whose label is not the word at its place in ``text`` (another text's audio) is left out."""
    rate = _sample_rate(wav)
    samples: dict[int, int] = {}
    notes: dict[bytes, dict[int, str]] = {b"labl": {}, b"note": {}}
    for name, body in _chunks(wav):
        if name == b"cue " and len(body) >= 4:
            (count,) = struct.unpack_from("<I", body)
            for index in range(min(count, (len(body) - 4) // 24)):
                number, _, _, _, _, sample = struct.unpack_from("<II4sIII", body, 4 + 24 * index)
                samples[number] = sample
        elif name == b"LIST" and body[:4] == b"adtl":
            for kind, note in _walk(body, 4):
                if kind in notes and len(note) >= 4:
                    text_of = note[4:].split(b"\0", 1)[0].decode("utf-8", "replace")
                    notes[kind][struct.unpack_from("<I", note)[0]] = text_of
    if rate is None:
        return ()
    found: list[WordMark] = []
    for number, sample in sorted(samples.items()):
        start, _, end = notes[b"note"].get(number, "").partition(" ")
        if start.isdigit() and end.isdigit() and text[int(start) : int(end)] == notes[b"labl"].get(number) != "":
            found.append(WordMark(int(start), int(end), sample / rate))
    return tuple(found)
