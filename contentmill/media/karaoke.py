"""Word-by-word highlighted captions: the subtitle cues as an ASS file with a libass karaoke tag per word.

Each word carries ``{\\k<centiseconds>}``: libass draws it in the secondary colour (white) until its time comes,
then in the primary colour (the highlight). A cue's time is spread over its words by their visible length, in
whole centiseconds that add up to the cue's own length, so the last word lights up as the cue ends. Words are
the subtitle breaker's atoms: Latin words between spaces, Chinese words as jieba segments them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from contentmill.media.subtitles import Cue
from contentmill.media.text import atoms, normalize

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


def _centis(cue: Cue) -> tuple[int, int]:
    """The cue's start and end in the centiseconds an ASS file counts."""
    return round(cue.start_ms / 10), round(cue.end_ms / 10)


def karaoke_line(cue: Cue) -> str:
    """The cue's text with a ``\\k`` tag before each word, lines joined by ``\\N``."""
    start, end = _centis(cue)
    words: list[tuple[str, str]] = []  # (word, what follows it: a space, a line break or nothing)
    for number, line in enumerate(cue.lines):
        text = normalize(line).translate(_UNSAFE)
        found = atoms(text)
        for index, atom in enumerate(found):
            following = ""
            if index + 1 < len(found):
                following = text[atom.end : found[index + 1].start]
            elif number + 1 < len(cue.lines):
                following = "\\N"
            words.append((text[atom.start : atom.end], following))
    weights = [max(1, len(word)) for word, _ in words]
    return "".join(f"{{\\k{centis}}}{word}{following}"
                   for centis, (word, following) in zip(spread(end - start, weights), words, strict=True))


def karaoke_ass(cues: Sequence[Cue], size: tuple[int, int], style: Mapping[str, object]) -> str:
    """An ASS file of ``cues`` as karaoke, in the subtitle ``style`` (its force_style fields) with the highlight
    as primary colour and the subtitle's own colour as secondary."""
    fields = {key: value for key, value in style.items() if key not in ("PlayResX", "PlayResY")}
    karaoke = {"Name": "Karaoke", **fields, "PrimaryColour": HIGHLIGHT,
               "SecondaryColour": fields.get("PrimaryColour", "&H00FFFFFF")}
    events = [f"Dialogue: 0,{ass_clock(_centis(cue)[0])},{ass_clock(_centis(cue)[1])},Karaoke,,0,0,0,,"
              f"{karaoke_line(cue)}" for cue in cues if _centis(cue)[1] > _centis(cue)[0]]
    return ass_document(size, [karaoke], events)
