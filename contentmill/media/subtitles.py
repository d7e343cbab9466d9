"""Subtitles timed from the real narration audio: each scene's text split into readable cues.

A cue holds at most two lines of at most 42 columns, where a CJK (full-width) character takes 42/16 columns,
so a line holds 42 Latin or 16 Chinese characters. Narration is split at sentence ends first, then at clause
punctuation, then between words (Latin) or characters (CJK). Within a scene, each cue's time is proportional
to its length; the cues of a scene touch end to start and cover exactly the scene's span of the audio.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Protocol

from contentmill.media.text import (
    Atom,
    atoms,
    balance_two,
    fitting,
    is_wide,
    normalize,
    span_text,
    wrap_atoms,
)

LINE_COLUMNS = 42
CJK_PER_LINE = 16
MAX_LINES = 2
_WIDE_COLUMNS = LINE_COLUMNS / CJK_PER_LINE

# A sentence ends at . ! ? … followed by a space (so "3.5" and "example.com" stay whole), or at a
# full-width 。！？ anywhere; closing quotes and brackets stay with the sentence they close.
# Clauses end likewise at , ; : and dashes, or at the full-width 、，；：.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?= |$)|[。！？]+[”’」』）]*")
_CLAUSE_END = re.compile(r"[,;:—–]+[\"'”’)\]]*(?= |$)|[，、；：]+[”’」』）]*")
_TIMESTAMP = re.compile(r"(\d+):(\d{2}):(\d{2})[,.](\d{3})")


class Narrated(Protocol):
    """A scene as subtitles see it: what is said and how long its audio really lasts."""

    @property
    def narration(self) -> str: ...

    @property
    def duration_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Cue:
    """One subtitle: shown from ``start_ms`` (inclusive) to ``end_ms`` (exclusive)."""

    start_ms: int
    end_ms: int
    lines: tuple[str, ...]

    @property
    def start_s(self) -> float:
        return self.start_ms / 1000

    @property
    def end_s(self) -> float:
        return self.end_ms / 1000

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def columns(text: str) -> float:
    """Display width in columns: 1 per Latin character, 42/16 per full-width character."""
    return sum(_WIDE_COLUMNS if is_wide(char) else 1.0 for char in text)


def _lines_for(text: str, found: list[Atom]) -> list[str] | None:
    """The cue's lines when ``found`` fits one cue, else None."""
    return balance_two(text, found, LINE_COLUMNS, columns) if found else None


def _cue_atoms(text: str, start: int, end: int) -> list[Atom]:
    """The atoms of ``text[start:end]``, any wider than a line cut by characters."""
    return fitting(text, atoms(text, start, end), LINE_COLUMNS, columns)


def _fits(text: str, start: int, end: int) -> bool:
    return _lines_for(text, _cue_atoms(text, start, end)) is not None


def _spans(pattern: re.Pattern[str], text: str, start: int, end: int) -> list[tuple[int, int]]:
    """``text[start:end]`` cut after each match of ``pattern``, as (start, end) spans without edge spaces."""
    cuts = [match.end() for match in pattern.finditer(text, start, end) if match.end() < end]
    bounds = [start, *cuts, end]
    spans = []
    for left, right in zip(bounds, bounds[1:], strict=False):
        while left < right and text[left] == " ":
            left += 1
        while right > left and text[right - 1] == " ":
            right -= 1
        if left < right:
            spans.append((left, right))
    return spans


def _pack(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Join neighbouring spans while the joined text still fits one cue."""
    packed: list[tuple[int, int]] = []
    for span in spans:
        if packed and _fits(text, packed[-1][0], span[1]):
            packed[-1] = (packed[-1][0], span[1])
        else:
            packed.append(span)
    return packed


def _chunks(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """A clause too long for one cue, cut between words/characters into cues of even length."""
    found = _cue_atoms(text, start, end)
    lines = wrap_atoms(text, found, LINE_COLUMNS, columns)
    count = -(-len(lines) // MAX_LINES)
    target = columns(text[start:end]) / count
    groups: list[list[Atom]] = [[]]
    for atom in found:
        current = groups[-1]
        grown = current + [atom]
        if current and (columns(span_text(text, grown)) > target * 1.05 or _lines_for(text, grown) is None):
            groups.append([atom])
        else:
            current.append(atom)
    if len(groups) > count:  # evening out cost a cue: fall back to full cues
        groups = [list(chain(*lines[index : index + MAX_LINES])) for index in range(0, len(lines), MAX_LINES)]
    return [(group[0].start, group[-1].end) for group in groups]


def _sentence_pieces(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """One sentence as cue spans: whole if it fits, else its clauses packed, else cut by words."""
    if _fits(text, start, end):
        return [(start, end)]
    pieces: list[tuple[int, int]] = []
    for clause_start, clause_end in _pack(text, _spans(_CLAUSE_END, text, start, end)):
        if _fits(text, clause_start, clause_end):
            pieces.append((clause_start, clause_end))
        else:
            pieces.extend(_chunks(text, clause_start, clause_end))
    return pieces


def split_narration(narration: str) -> list[tuple[str, ...]]:
    """The lines of each cue for one scene's narration, in order."""
    text = normalize(narration)
    if not text:
        return []
    pieces: list[tuple[int, int]] = []
    whole: list[bool] = []  # whether each piece is a complete sentence, which may share a cue with the next
    for start, end in _spans(_SENTENCE_END, text, 0, len(text)):
        own = _sentence_pieces(text, start, end)
        pieces.extend(own)
        whole.extend([len(own) == 1] * len(own))
    merged: list[tuple[int, int]] = []
    for index, piece in enumerate(pieces):
        if merged and whole[index] and whole[index - 1] and _fits(text, merged[-1][0], piece[1]):
            merged[-1] = (merged[-1][0], piece[1])
        else:
            merged.append(piece)
    cues = []
    for start, end in merged:
        lines = _lines_for(text, _cue_atoms(text, start, end))
        assert lines is not None, "every piece was cut to fit one cue"
        cues.append(tuple(lines))
    return cues


def _weight(lines: tuple[str, ...]) -> int:
    """How long a cue stays up, relatively: its visible characters."""
    return max(1, sum(len(line.replace(" ", "")) for line in lines))


def scene_cues(narration: str, start_s: float, duration_s: float) -> list[Cue]:
    """The cues of one scene spanning [start_s, start_s + duration_s), timed by text length."""
    if duration_s < 0:
        raise ValueError(f"a scene cannot last {duration_s} s")
    split = split_narration(narration)
    start_ms, end_ms = round(start_s * 1000), round((start_s + duration_s) * 1000)
    if not split or end_ms <= start_ms:
        return []
    weights = [_weight(lines) for lines in split]
    total = sum(weights)
    bounds = [start_ms]
    done = 0
    for weight in weights:
        done += weight
        bounds.append(start_ms + round((end_ms - start_ms) * done / total))
    return [
        Cue(begin, finish, lines)
        for begin, finish, lines in zip(bounds[:-1], bounds[1:], split, strict=True)
        if finish > begin  # a scene shorter than a millisecond per cue shows what fits
    ]


def build_cues(scenes: Iterable[Narrated]) -> list[Cue]:
    """Cues for scenes played back to back, each scene starting where the previous one's audio ends."""
    cues: list[Cue] = []
    start = 0.0
    for scene in scenes:
        cues.extend(scene_cues(scene.narration, start, scene.duration_s))
        start += scene.duration_s
    return cues


def _timestamp(ms: int) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d},{millis:03d}"


def to_srt(cues: Sequence[Cue]) -> str:
    """SubRip text: numbered blocks, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, lines, a blank line."""
    blocks = [
        f"{number}\n{_timestamp(cue.start_ms)} --> {_timestamp(cue.end_ms)}\n{cue.text}\n"
        for number, cue in enumerate(cues, start=1)
    ]
    return "\n".join(blocks)


def build_srt(scenes: Iterable[Narrated]) -> str:
    return to_srt(build_cues(scenes))


def _parse_ms(stamp: str, where: str) -> int:
    match = _TIMESTAMP.fullmatch(stamp.strip())
    if not match:
        raise ValueError(f"{where}: {stamp.strip()!r} is not a timestamp like 00:01:02,345")
    hours, minutes, seconds, millis = (int(group) for group in match.groups())
    if minutes > 59 or seconds > 59:
        raise ValueError(f"{where}: {stamp.strip()!r} has minutes or seconds above 59")
    return ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis


def parse_srt(srt: str) -> list[Cue]:
    """Cues of a SubRip file (BOM, CRLF and missing cue numbers tolerated); ValueError names a bad block."""
    blocks = re.split(r"\n[ \t]*\n", srt.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").strip())
    cues = []
    for number, block in enumerate(blocks, start=1):
        lines = block.split("\n")
        if not block.strip():
            continue
        if "-->" not in lines[0]:
            lines = lines[1:]  # the cue number
        where = f"subtitle block {number}"
        if not lines or "-->" not in lines[0]:
            raise ValueError(f"{where}: no 'start --> end' line in {block[:60]!r}")
        start, end = lines[0].split("-->", 1)
        start_ms = _parse_ms(start, where)
        end_ms = _parse_ms(end.strip().split(" ", 1)[0], where)  # position hints may follow the end time
        if end_ms < start_ms:
            raise ValueError(f"{where}: ends ({end.strip()}) before it starts ({start.strip()})")
        cues.append(Cue(start_ms, end_ms, tuple(lines[1:])))
    return cues
