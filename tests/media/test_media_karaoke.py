"""Karaoke captions: one libass ``\\k`` tag per word, the tags of a cue summing to the cue's length, words lighting
up where espeak-ng's voice starts them, and in the rendered video the highlight spreading over a line's words as it
is said."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contentmill.audio import tone
from contentmill.media.karaoke import HIGHLIGHT, karaoke_ass, spread
from contentmill.media.layout import Layout
from contentmill.media.render import Scene, render_video, subtitle_fields
from contentmill.media.slides import write_slide
from contentmill.media.subtitles import build_cues
from contentmill.media.text import word_starts
from contentmill.providers.espeak import EspeakSpeechModel
from contentmill.providers.word_marks import WordMark, word_marks
from contentmill.requests import SpeechRequest

_K = re.compile(r"\{\\k(\d+)\}")
_EVENT = re.compile(r"^Dialogue: 0,(\d+):(\d\d):(\d\d)\.(\d\d),(\d+):(\d\d):(\d\d)\.(\d\d),Karaoke,,0,0,0,,(.*)$", re.M)
_SIZE = (320, 568)


class _Narrated:
    def __init__(self, narration: str, duration_s: float, words: Sequence[WordMark] = ()) -> None:
        self.narration, self.duration_s, self.words = narration, duration_s, tuple(words)


def _centis(hours: str, minutes: str, seconds: str, centis: str) -> int:
    return ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * 100 + int(centis)


def _document(scenes: list[_Narrated]) -> str:
    from contentmill.media.fonts import find_font

    cues = build_cues(scenes)
    font = find_font(" ".join(cue.text for cue in cues))
    return karaoke_ass(scenes, _SIZE, subtitle_fields(Layout.for_size(_SIZE), font, cues))


def _word_starts(document: str) -> list[tuple[str, float]]:
    """Each word of the karaoke file and the second it lights up: its event's start plus the tags before it."""
    found = []
    for event in _EVENT.findall(document):
        at = _centis(*event[:4])
        for length, word in zip(_K.findall(event[8]), _K.split(event[8])[2::2], strict=True):
            if word.strip():
                found.append((word.replace("\\N", "").strip(), at / 100))
            at += int(length)
    return found


def test_every_word_carries_one_tag_and_a_line_s_tags_fill_its_time() -> None:
    text = ("Octopuses have three hearts and blue blood. Each of their eight arms can taste what it touches, "
            "and they change colour in a fraction of a second.")
    cues = build_cues([_Narrated(text, 7.37)])
    events = _EVENT.findall(_document([_Narrated(text, 7.37)]))
    assert len(events) == len(cues) > 1
    for event, cue in zip(events, cues, strict=True):
        start, end, body = _centis(*event[:4]), _centis(*event[4:8]), event[8]
        tags = [int(value) for value in _K.findall(body)]
        assert len(tags) == len(" ".join(cue.lines).split())  # one tag per word
        assert abs(sum(tags) - (end - start)) <= 1
        assert _K.sub("", body).replace("\\N", " ") == " ".join(cue.lines)


def test_chinese_lines_karaoke_by_jieba_words() -> None:
    text = "手冲咖啡的关键在于水温和研磨度。用九十度左右的热水慢慢注入，让咖啡粉均匀地释放香气。"
    for event in _EVENT.findall(_document([_Narrated(text, 6.0)])):
        body = event[8].replace("\\N", "")
        words = _K.split(body)[2::2]
        line = "".join(words)
        starts = word_starts(line)
        index = 0
        for word in words:  # each tagged piece begins at a segmenter word and holds whole words
            assert index in starts or line[index] in "，。"
            index += len(word)
        assert len(words) < len(line)  # words, not characters


def test_words_light_up_where_espeak_starts_them() -> None:
    text = "The extraordinarily unpredictable octopus can see a red crab at night. It is quick and it is shy."
    spoken = asyncio.run(EspeakSpeechModel().synthesize(SpeechRequest(text, language="en")))
    said = spoken.meta["words"]  # espeak-ng's own word events
    marks = word_marks(spoken.audio, text)  # what the WAV carries through the gateway and the store
    assert [text[mark.start:mark.end] for mark in marks] == [text[word.start:word.end] for word in said]
    assert len(marks) == len(text.split())
    before = _Narrated("Octopuses are clever.", 1.37)
    voiced = [before, _Narrated(text, spoken.duration_s, marks)]
    starts = _word_starts(_document(voiced))[3:]  # after the first scene's three words
    assert [word for word, _ in starts] == text.split()
    frame = 1 / 30
    for (_, second), word in zip(starts, said, strict=True):
        assert abs(second - (1.37 + word.at_s)) <= frame
    estimated = _word_starts(_document([before, _Narrated(text, spoken.duration_s)]))[3:]
    off = [abs(voice - guess) for (_, voice), (_, guess) in zip(starts, estimated, strict=True)]
    assert max(off) > 3 * frame  # the length-based estimate misplaces the words around the long ones


def test_spread_keeps_the_total() -> None:
    assert spread(101, [3, 3, 3]) == [34, 33, 34]
    assert sum(spread(7, [5, 1, 1, 9])) == 7
    assert spread(5, []) == []


def _gold(image: Image.Image) -> int:
    """Pixels of the highlight colour (255, 215, 0) in the lower third, where the subtitles are."""
    width, height = image.size
    pixels = np.asarray(image.crop((0, height * 2 // 3, width, height))).astype(int)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return int(((red > 200) & (green > 160) & (green < 240) & (blue < 90)).sum())


@pytest.mark.slow
def test_the_highlight_spreads_over_the_line_as_it_is_said(
    tmp_path: Path, frame_at: Callable[[Path, float], Image.Image]
) -> None:
    assert HIGHLIGHT == "&H0000D7FF"
    audio = tmp_path / "voice.wav"
    audio.write_bytes(tone(4.0))
    slide = write_slide(tmp_path / "slide.png", "", size=_SIZE)
    scenes = [Scene.from_files(slide, audio, "Blue blood flows in three hearts")]
    rendered = render_video(scenes, tmp_path / "karaoke.mp4", size=_SIZE, fps=10, karaoke=True)
    early, late = _gold(frame_at(rendered.path, 0.9)), _gold(frame_at(rendered.path, 3.1))
    assert late > 2 * early and late > 100  # the line lights up word by word, left to right
    plain = render_video(scenes, tmp_path / "plain.mp4", size=_SIZE, fps=10)
    assert _gold(frame_at(plain.path, 3.1)) < late / 10  # without karaoke: white subtitles
