"""Cues from narration and real durations: readable lines, exact coverage, no overlap, SRT round trip."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contentmill.media.subtitles import (
    Cue,
    build_cues,
    build_srt,
    columns,
    parse_srt,
    scene_cues,
    split_narration,
    to_srt,
)
from contentmill.media.text import is_wide, normalize, word_starts, wrap

EN = (
    "This stainless steel water bottle keeps drinks cold for a full day and hot for twelve hours. "
    "Its double wall stops condensation, so bags and desks stay dry. "
    "The wide mouth takes ice cubes and is easy to clean, and the leak-proof lid closes with a quarter turn, "
    "which makes it a steady companion for "
    "commutes, hikes and long days at the office."
)
ZH = (
    "这款不锈钢保温杯可以让饮料保持冰凉一整天，或者保持热度十二个小时。"
    "双层杯壁不会凝结水珠，所以包和桌面都能保持干爽。"
    "宽口设计可以放进冰块也很容易清洗防漏杯盖只需旋转四分之一圈就能拧紧它比一本平装书还轻适合大多数杯架。"
)
LINE_START_FORBIDDEN = "，。、！？；：）」』》,.!?;:)"


@dataclass(frozen=True)
class Narration:
    narration: str
    duration_s: float


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _assert_readable(cues: list[Cue]) -> None:
    for cue in cues:
        assert 1 <= len(cue.lines) <= 2
        for line in cue.lines:
            assert line == line.strip() and line
            assert columns(line) <= 42 + 1e-9
            assert sum(1 for char in line if is_wide(char)) <= 16
            assert len(line) <= 42


def _assert_timing(scenes: list[Narration], cues: list[Cue]) -> None:
    """Each scene's cues tile its span exactly, in order, and carry exactly its text."""
    start = 0.0
    remaining = list(cues)
    for scene in scenes:
        begin, end = round(start * 1000), round((start + scene.duration_s) * 1000)
        own = [cue for cue in remaining if begin <= cue.start_ms < end]
        remaining = remaining[len(own) :]
        if _squeeze(scene.narration) and end > begin:
            assert own, "a narrated scene has cues"
            assert own[0].start_ms == begin and own[-1].end_ms == end
            for before, after in zip(own, own[1:], strict=False):
                assert before.end_ms == after.start_ms  # touching: no gap, no overlap
            assert all(cue.end_ms > cue.start_ms for cue in own)
            assert "".join(_squeeze(cue.text) for cue in own) == _squeeze(scene.narration)
        else:
            assert own == []
        start += scene.duration_s
    assert remaining == []


def test_english_narration_is_split_into_readable_cues_at_sentences_and_clauses() -> None:
    cues = split_narration(EN)
    texts = [" ".join(lines) for lines in cues]
    assert all(len(lines) <= 2 and all(len(line) <= 42 for line in lines) for lines in cues)
    assert texts[2] == "Its double wall stops condensation, so bags and desks stay dry."  # a sentence, whole
    assert texts[3:6] == [  # a long sentence cut after its clauses
        "The wide mouth takes ice cubes and is easy to clean,",
        "and the leak-proof lid closes with a quarter turn,",
        "which makes it a steady companion for commutes,",
    ]
    assert texts[-1].endswith("long days at the office.")
    assert not any(re.search(r"\. \w", text) for text in texts)  # no cue runs on into a cut sentence


def test_short_whole_sentences_share_a_cue() -> None:
    assert split_narration("Hello there. How are you?  Fine.") == [("Hello there. How are you? Fine.",)]


def test_chinese_narration_is_split_within_sixteen_characters_a_line() -> None:
    cues = split_narration(ZH)
    assert "".join("".join(lines) for lines in cues) == ZH
    for lines in cues:
        assert len(lines) <= 2
        for line in lines:
            assert len(line) <= 16
            assert line[0] not in LINE_START_FORBIDDEN
    assert "".join(cues[1]) == "或者保持热度十二个小时。"  # a clause of its own after the comma
    assert any(len("".join(lines)) > 16 for lines in cues)  # long unpunctuated text fills two lines


def test_words_and_urls_longer_than_a_line_are_cut_by_characters() -> None:
    text = "Visit https://example.com/" + "a" * 100 + " today."
    cues = split_narration(text)
    _assert_readable([Cue(0, 1, lines) for lines in cues])
    assert "".join("".join(lines) for lines in cues) == _squeeze(text)


def test_cue_times_are_proportional_to_text_length() -> None:
    cues = scene_cues(EN, 0.0, 20.0)
    lengths = [len(_squeeze(cue.text)) for cue in cues]
    total = sum(lengths)
    elapsed = 0
    for cue, length in zip(cues, lengths, strict=True):
        elapsed += length
        assert cue.end_ms == round(20_000 * elapsed / total)


def test_scenes_follow_each_other_on_the_real_audio_durations() -> None:
    scenes = [Narration(EN, 12.3456), Narration("", 1.25), Narration(ZH, 9.8765), Narration("Bye.", 0.4)]
    cues = build_cues(scenes)
    _assert_readable(cues)
    _assert_timing(scenes, cues)
    assert cues[-1].end_ms == round((12.3456 + 1.25 + 9.8765 + 0.4) * 1000)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(
                st.one_of(
                    st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=60),
                    st.text(alphabet="价格保温杯子的一天中文字", min_size=1, max_size=30),
                    st.sampled_from(list(".,!?。，、：()「」") + ["3.5"]),
                ),
                max_size=40,
            ).map(" ".join),
            st.floats(min_value=0.0, max_value=60.0, allow_nan=False),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_any_narration_gives_readable_cues_that_tile_each_scene(parts: list[tuple[str, float]]) -> None:
    scenes = [Narration(text, duration) for text, duration in parts]
    cues = build_cues(scenes)
    _assert_readable(cues)
    if all(scene.duration_s * 1000 >= 4 * len(scene.narration) for scene in scenes):  # a millisecond per cue
        _assert_timing(scenes, cues)
    assert parse_srt(to_srt(cues)) == cues


def test_srt_text_and_round_trip() -> None:
    cues = build_cues([Narration("Hello there. 你好，世界。", 3723.5)])
    srt = to_srt(cues)
    assert srt.startswith("1\n00:00:00,000 --> ")
    assert "01:02:03,500\n" in srt
    assert parse_srt(srt) == cues
    windows = "\ufeff" + srt.replace("\n", "\r\n")
    assert parse_srt(windows) == cues
    assert build_srt([Narration("Hello there.", 2.0)]) == "1\n00:00:00,000 --> 00:00:02,000\nHello there.\n"


def test_srt_without_numbers_and_with_position_hints_is_read() -> None:
    srt = (
        "00:00:01,000 --> 00:00:02,500 X1:10 X2:20\nfirst\nsecond\n\n"
        "2\n00:00:02.500 --> 00:00:03,000\nthird\n"
    )
    assert parse_srt(srt) == [Cue(1000, 2500, ("first", "second")), Cue(2500, 3000, ("third",))]


@pytest.mark.parametrize(
    ("srt", "complaint"),
    [
        ("1\n00:00:01 --> 00:00:02\ntext\n", "not a timestamp"),
        ("1\n00:00:03,000 --> 00:00:02,000\ntext\n", "ends"),
        ("1\njust text\n", "no 'start --> end' line"),
        ("1\n00:61:00,000 --> 00:62:00,000\ntext\n", "above 59"),
    ],
)
def test_malformed_srt_is_refused_with_the_block_named(srt: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=f"subtitle block 1: .*{complaint}"):
        parse_srt(srt)


def test_silent_or_empty_scenes_have_no_cues() -> None:
    assert scene_cues("   ", 0.0, 3.0) == []
    assert scene_cues("Words.", 1.0, 0.0) == []
    with pytest.raises(ValueError, match="cannot last"):
        scene_cues("Words.", 0.0, -1.0)


def test_wrap_breaks_latin_and_chinese_between_words() -> None:
    assert wrap("one two three four", 9, len) == ["one two", "three", "four"]
    assert wrap("保温杯可以，保冷。", 5, len) == ["保温杯", "可以，", "保冷。"]  # not "保温杯可": "可以" is a word


ZH_WORDS = (
    "手冲咖啡起源于二十世纪初的德国，一位家庭主妇用吸墨纸过滤咖啡渣。19世纪六十年代末，人们开始研究萃取的温度和时间，"
    "如今咖啡爱好者用细口壶把九十二度左右的热水慢慢注入研磨好的咖啡粉里。"
)


def test_no_chinese_subtitle_line_starts_or_ends_inside_a_word() -> None:
    text = normalize(ZH_WORDS)
    starts = word_starts(text) | {len(text)}
    assert text.index("代") not in starts  # "年代" is not cut, so "19世纪六十年 / 代末" cannot happen
    position = 0
    for lines in split_narration(ZH_WORDS):
        for line in lines:
            begin = text.index(line, position)
            end = begin + len(line)
            assert begin in starts and end in starts, f"{line!r} starts or ends inside a word"
            assert len(line) <= 16
            position = end
    assert position == len(text)
