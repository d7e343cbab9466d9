"""Word-by-word highlighted captions: the subtitle cues as an ASS file with a libass karaoke tag per word.

Each word carries ``{\\k<centiseconds>}``: libass draws it in the secondary colour (white) until its time comes,
then in the primary colour (the highlight). Where the voice said when each word starts (espeak-ng's word marks,
``Voiced.words``), a word lights up at that moment, and a cue shows from its first word's start to the next cue's
(a scene's first cue from the scene's start); otherwise a cue's time is spread over its words by their visible
length. Either way the tags are whole centiseconds that add up to the cue's own length. Words are the subtitle
breaker's atoms: Latin words between spaces, Chinese words as jieba segments them.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

from contentmill.media.subtitles import Cue, Narrated, scene_cues
from contentmill.media.text import atoms, normalize
from contentmill.providers.word_marks import WordMark

HIGHLIGHT = "&H0000D7FF"  # ASS colours are &HAABBGGRR: opaque gold, (255, 215, 0)
_UNSAFE = str.maketrans("", "", "{}\\")


def ass_time(seconds: float) -> str:
    """An ASS timestamp, H:MM:SS.cc."""
    return ass_clock(round(seconds * 100))


def ass_clock(centis: int) -> str:
    """An ASS timestamp of ``centis`` hundredths of a second."""
    centis = max(0, centis)
    return f"{centis // 360000}:{centis // 6000 % 60:02d}:{centis // 100 % 60:02d}.{centis % 100:02d}"


def ass_document(size: tuple[int, int], styles: Sequence[Mapping[str, object]], events: Sequence[str]) -> str:
    """A whole ASS file: script info for a ``size`` canvas, one style per mapping (its keys are the Format
    line's fields, ``Name`` first), then the dialogue ``events``."""
    width, height = size
    lines = ["[Script Info]", "ScriptType: v4.00+", f"PlayResX: {width}", f"PlayResY: {height}", "WrapStyle: 2",
             "", "[V4+ Styles]"]
    for style in styles:
        lines += [f"Format: {', '.join(style)}", f"Style: {','.join(str(value) for value in style.values())}"]
    lines += ["", "[Events]", "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
              *events]
    return "\n".join(lines) + "\n"


def spread(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` as whole numbers that sum to exactly ``total``."""
    whole = sum(weights)
    if whole <= 0:
        return [0] * len(weights)
    bounds = [0]
    done = 0
    for weight in weights:
        done += weight
        bounds.append(round(total * done / whole))
    return [end - start for start, end in zip(bounds[:-1], bounds[1:], strict=True)]


class Voiced(Narrated, Protocol):
    """A scene as karaoke sees it: what is said, how long its audio lasts, and where the voice starts each word
    (characters of ``narration``; empty when the voice did not say)."""

    @property
    def words(self) -> Sequence[WordMark]: ...


class _Word(NamedTuple):
    """A word of a cue as written out: its text, what follows it (a space, a line break or nothing), and where
    it stands: the cue's line and the characters of that (normalized) line."""

    text: str
    following: str
    line: int
    start: int
    end: int


class _Event(NamedTuple):
    start: int  # centiseconds
    end: int
    body: str


def _centis(cue: Cue) -> tuple[int, int]:
    """The cue's start and end in the centiseconds an ASS file counts."""
    return round(cue.start_ms / 10), round(cue.end_ms / 10)


def _words(cue: Cue) -> list[_Word]:
    words: list[_Word] = []
    for number, line in enumerate(cue.lines):
        text = normalize(line)
        found = atoms(text)
        for index, atom in enumerate(found):
            following = ""
            if index + 1 < len(found):
                following = text[atom.end : found[index + 1].start].translate(_UNSAFE)
            elif number + 1 < len(cue.lines):
                following = "\\N"
            words.append(_Word(text[atom.start : atom.end].translate(_UNSAFE), following, number, atom.start,
                               atom.end))
    return words


def _tagged(words: Sequence[_Word], centis: Sequence[int], lead: int = 0) -> str:
    """The words each behind its ``\\k`` tag; ``lead``: centiseconds before the first word lights up."""
    return (f"{{\\k{lead}}}" if lead > 0 else "") + "".join(
        f"{{\\k{length}}}{word.text}{word.following}" for length, word in zip(centis, words, strict=True))


def karaoke_line(cue: Cue) -> str:
    """The cue's text with a ``\\k`` tag before each word, lines joined by ``\\N``, timed by word length."""
    start, end = _centis(cue)
    words = _words(cue)
    return _tagged(words, spread(end - start, [max(1, len(word.text)) for word in words]))


def _normalized_places(narration: str) -> list[int]:
    """Where each character of ``narration`` stands in ``normalize(narration)`` (a run of spaces: at its one
    space, or at the next word where none is kept)."""
    places: list[int] = []
    index, pending = 0, False
    for char in narration:
        if char.isspace():
            pending = pending or index > 0
            places.append(index + pending)
            continue
        index += pending
        pending = False
        places.append(index)
        index += 1
    return places


def voice_seconds(scene: Voiced, spans: Sequence[tuple[int, int]]) -> list[float]:
    """When the voice starts each span ``[start, end)`` of the scene's normalized narration, in seconds from the
    scene's start: its first word mark, or for a span with none (a dash, a number espeak-ng split) a time
    interpolated by characters between its neighbours; never earlier than the span before it."""
    places = _normalized_places(scene.narration)
    marks = sorted((places[mark.start], mark.at_s) for mark in scene.words if 0 <= mark.start < len(places))
    at = [place for place, _ in marks]
    found: list[float | None] = []
    for start, end in spans:
        first = bisect_right(at, start - 1)
        found.append(marks[first][1] if first < len(marks) and marks[first][0] < end else None)
    known = [(0, 0.0)] + [(span[0], time) for span, time in zip(spans, found, strict=True) if time is not None]
    known.append((len(normalize(scene.narration)), scene.duration_s))
    seconds: list[float] = []
    for (start, _), time in zip(spans, found, strict=True):
        if time is None:
            after = next((point for point in known if point[0] > start), known[-1])
            before = max((point for point in known if point[0] <= start), default=known[0])
            share = (start - before[0]) / (after[0] - before[0]) if after[0] > before[0] else 0.0
            time = before[1] + share * (after[1] - before[1])
        seconds.append(min(scene.duration_s, max(time, seconds[-1] if seconds else 0.0)))
    return seconds


def _voiced_events(scene: Voiced, cues: Sequence[Cue], start_s: float) -> list[_Event] | None:
    """The scene's cues with each word lighting up when the voice says it; None when a cue's lines cannot be
    found in the narration (then they are timed by length)."""
    text = normalize(scene.narration)
    words: list[list[_Word]] = []
    spans: list[tuple[int, int]] = []
    cursor = 0
    for cue in cues:
        places = []
        for line in cue.lines:
            place = text.find(normalize(line), cursor)
            if place < 0:
                return None
            places.append(place)
            cursor = place + len(normalize(line))
        words.append(_words(cue))
        spans += [(places[word.line] + word.start, places[word.line] + word.end) for word in words[-1]]
    starts = iter([round((start_s + second) * 100) for second in voice_seconds(scene, spans)])
    timed = [[next(starts) for _ in cue_words] for cue_words in words]
    begins = [_centis(cues[0])[0], *(cue_starts[0] if cue_starts else _centis(cue)[0]
                                     for cue, cue_starts in zip(cues[1:], timed[1:], strict=True))]
    ends = [*begins[1:], _centis(cues[-1])[1]]
    events = []
    for cue_words, cue_starts, begin, end in zip(words, timed, begins, ends, strict=True):
        bounds = [min(end, max(begin, start)) for start in cue_starts] + [end]
        lengths = [later - earlier for earlier, later in zip(bounds[:-1], bounds[1:], strict=True)]
        events.append(_Event(begin, end, _tagged(cue_words, lengths, bounds[0] - begin)))
    return events


def karaoke_events(scenes: Sequence[Voiced]) -> list[_Event]:
    """Each cue of ``scenes`` played back to back, as (start, end, tagged text) in centiseconds."""
    events: list[_Event] = []
    start = 0.0
    for scene in scenes:
        cues = scene_cues(scene.narration, start, scene.duration_s)
        voiced = _voiced_events(scene, cues, start) if scene.words and cues else None
        events += voiced if voiced is not None else [_Event(*_centis(cue), karaoke_line(cue)) for cue in cues]
        start += scene.duration_s
    return [event for event in events if event.end > event.start]


def karaoke_ass(scenes: Sequence[Voiced], size: tuple[int, int], style: Mapping[str, object]) -> str:
    """An ASS file of the scenes' subtitle cues as karaoke, in the subtitle ``style`` (its force_style fields)
    with the highlight as primary colour and the subtitle's own colour as secondary."""
    fields = {key: value for key, value in style.items() if key not in ("PlayResX", "PlayResY")}
    karaoke = {"Name": "Karaoke", **fields, "PrimaryColour": HIGHLIGHT,
               "SecondaryColour": fields.get("PrimaryColour", "&H00FFFFFF")}
    events = [f"Dialogue: 0,{ass_clock(event.start)},{ass_clock(event.end)},Karaoke,,0,0,0,,{event.body}"
              for event in karaoke_events(scenes)]
    return ass_document(size, [karaoke], events)
