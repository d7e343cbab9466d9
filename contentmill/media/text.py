"""Script-aware text breaking shared by slides (pixel widths) and subtitles (column widths).

Latin text breaks between words; Chinese text breaks between the words jieba segments it into (never inside
"年代"), and never before closing punctuation or after opening brackets (kinsoku), so a line never starts with
"，" or ends with "「".
"""

from __future__ import annotations

import logging
import unicodedata
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

Measure = Callable[[str], float]

# Letters of the scripts that need a CJK font: ideographs, kana, hangul, bopomofo.
_CJK_RANGES = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x312F),  # Bopomofo
    (0x3130, 0x318F),  # Hangul compatibility Jamo
    (0x31A0, 0x31FF),  # Bopomofo extended, CJK strokes, Katakana extensions
    (0x3400, 0x4DBF),  # CJK Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3134F),  # CJK Extensions B-G and compatibility supplement
)
NO_BREAK_BEFORE = frozenset(
    "，。、！？；：）」』》〉】〕’”…‥・ー〜々ゝゞヽヾぁぃぅぇぉっゃゅょァィゥェォッャュョ,.!?;:)]}%"
)
NO_BREAK_AFTER = frozenset("（「『《〈【〔‘“([{")
SENTENCE_END = frozenset(".!?…。！？")
CLAUSE_END = frozenset(",;:—–，、；：")


def is_cjk(char: str) -> bool:
    """Whether ``char`` is a letter of a CJK script (the characters a Latin-only font cannot draw)."""
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def has_cjk(text: str) -> bool:
    return any(is_cjk(char) for char in text)


def is_wide(char: str) -> bool:
    """Full-width characters (CJK letters and punctuation) take two columns and may break anywhere."""
    return unicodedata.east_asian_width(char) in ("W", "F")


def normalize(text: str) -> str:
    """One space between words, none at the ends: the form every span in this module points into."""
    return " ".join(text.split())


@lru_cache(maxsize=1)
def _jieba() -> ModuleType:
    with warnings.catch_warnings():  # jieba 0.42 asks for pkg_resources and has old-style regex escapes
        warnings.simplefilter("ignore")
        import jieba
    jieba.setLogLevel(logging.WARNING)  # not "Building prefix dict..." on stderr
    module: ModuleType = jieba
    return module


@lru_cache(maxsize=512)
def word_starts(text: str) -> frozenset[int]:
    """Where each word of ``text`` starts, as jieba segments it (empty for text without CJK)."""
    if not has_cjk(text):
        return frozenset()
    starts, index = set(), 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokens = list(_jieba().cut(text))
    for token in tokens:
        starts.add(index)
        index += len(token)
    return frozenset(starts) if index == len(text) else frozenset(range(len(text)))


@dataclass(frozen=True, slots=True)
class Atom:
    """An unbreakable run ``text[start:end]``; a line may break only between atoms."""

    start: int
    end: int


def atoms(text: str, start: int = 0, end: int | None = None) -> list[Atom]:
    """The atoms of normalized ``text[start:end]``: words, single wide characters, kinsoku kept together."""
    stop = len(text) if end is None else end
    found: list[Atom] = []
    run_start: int | None = None
    for index in range(start, stop):
        char = text[index]
        if char == " ":
            if run_start is not None:
                found.append(Atom(run_start, index))
                run_start = None
        elif is_wide(char):
            if run_start is not None:
                found.append(Atom(run_start, index))
            found.append(Atom(index, index + 1))
            run_start = None
        elif run_start is None:
            run_start = index
    if run_start is not None:
        found.append(Atom(run_start, stop))
    return _glue(text, _words(text, found))


def _words(text: str, found: list[Atom]) -> list[Atom]:
    """Join touching wide characters of one word (as jieba cuts the whole text) into one atom."""
    starts = word_starts(text)
    if not starts:
        return found
    joined: list[Atom] = []
    for atom in found:
        if (joined and joined[-1].end == atom.start and atom.start not in starts
                and is_wide(text[atom.start]) and is_wide(text[atom.start - 1])):
            joined[-1] = Atom(joined[-1].start, atom.end)
        else:
            joined.append(atom)
    return joined


def _glue(text: str, found: list[Atom]) -> list[Atom]:
    """Join atoms that touch (no space between) where a break would split punctuation from its word."""
    glued: list[Atom] = []
    for atom in found:
        if glued and glued[-1].end == atom.start:
            previous = glued[-1]
            if text[atom.start] in NO_BREAK_BEFORE or text[previous.end - 1] in NO_BREAK_AFTER:
                glued[-1] = Atom(previous.start, atom.end)
                continue
        glued.append(atom)
    return glued


def _split_long(text: str, atom: Atom, width: float, measure: Measure) -> list[Atom]:
    """An atom wider than a line (a long URL or word) cut by characters, as a last resort."""
    pieces: list[Atom] = []
    start = atom.start
    for index in range(atom.start + 1, atom.end):
        if measure(text[start : index + 1]) > width:
            pieces.append(Atom(start, index))
            start = index
    pieces.append(Atom(start, atom.end))
    return pieces


def fitting(text: str, found: list[Atom], width: float, measure: Measure) -> list[Atom]:
    """``found`` with every atom wider than ``width`` cut by characters, so any line can hold each atom."""
    result: list[Atom] = []
    for atom in found:
        if measure(text[atom.start : atom.end]) <= width:
            result.append(atom)
        else:
            result.extend(_split_long(text, atom, width, measure))
    return result


def wrap_atoms(text: str, found: list[Atom], width: float, measure: Measure) -> list[list[Atom]]:
    """Greedy line filling: the fewest lines, each at most ``width`` wide."""
    lines: list[list[Atom]] = []
    current: list[Atom] = []
    for atom in fitting(text, found, width, measure):
        if current and measure(text[current[0].start : atom.end]) > width:
            lines.append(current)
            current = []
        current.append(atom)
    if current:
        lines.append(current)
    return lines


def span_text(text: str, line: list[Atom]) -> str:
    return text[line[0].start : line[-1].end]


def wrap(text: str, width: float, measure: Measure) -> list[str]:
    """``text`` broken into lines at most ``width`` wide (as ``measure`` counts)."""
    clean = normalize(text)
    return [span_text(clean, line) for line in wrap_atoms(clean, atoms(clean), width, measure)]


def balance_two(text: str, found: list[Atom], width: float, measure: Measure) -> list[str] | None:
    """The best break of ``found`` into at most two lines, or None if two lines cannot hold it.

    One line when it fits; otherwise the break that keeps the longer line shortest, with a bonus for
    breaking after sentence or clause punctuation so each line reads as a unit.
    """
    whole = span_text(text, found)
    total = measure(whole)
    if total <= width:
        return [whole]
    if total > 2 * (width + measure(" ")):  # two lines could not hold it, wherever they broke
        return None
    best: tuple[float, int] | None = None
    for index in range(1, len(found)):
        first, second = span_text(text, found[:index]), span_text(text, found[index:])
        longer = max(measure(first), measure(second))
        if longer > width:
            continue
        last = first[-1]
        bonus = 0.2 * width if last in SENTENCE_END else 0.1 * width if last in CLAUSE_END else 0.0
        score = longer - bonus
        if best is None or score < best[0]:
            best = (score, index)
    if best is None:
        return None
    return [span_text(text, found[: best[1]]), span_text(text, found[best[1] :])]
