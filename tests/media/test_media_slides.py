"""Slides drawn for real: size, text inside the safe area (clear of the subtitles), wrapping, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageChops

from contentmill.errors import EngineError
from contentmill.media.fonts import find_font
from contentmill.media.layout import LANDSCAPE, VERTICAL, Layout
from contentmill.media.slides import PALETTES, render_slide, write_slide

EN_TITLE = "Why stainless steel bottles keep drinks cold"
EN_BODY = "Double walls trap a vacuum between them, so heat cannot travel in or out. The lid seals in a turn."
ZH_TITLE = "为什么不锈钢保温杯能保冷一整天"
ZH_BODY = "双层杯壁之间是真空，热量无法进出。防漏杯盖只需旋转四分之一圈就能拧紧，适合通勤、徒步和长时间办公。"
CASES = [
    pytest.param(VERTICAL, EN_TITLE, EN_BODY, id="english-vertical"),
    pytest.param(VERTICAL, ZH_TITLE, ZH_BODY, id="chinese-vertical"),
    pytest.param(LANDSCAPE, EN_TITLE, EN_BODY, id="english-landscape"),
    pytest.param(LANDSCAPE, ZH_TITLE, ZH_BODY, id="chinese-landscape"),
]
EDGE = 4  # anti-aliasing may reach a few pixels past a glyph's nominal box


def _ink(slide: Image.Image, reference: Image.Image) -> tuple[tuple[int, int, int, int] | None, int]:
    """Bounding box of the pixels that differ clearly from ``reference``, and how many there are."""
    grey = ImageChops.difference(slide, reference).convert("L")
    difference = grey.point(lambda value: 255 if value > 40 else 0)
    return difference.getbbox(), difference.histogram()[255]


def _assert_inside_text_area(box: tuple[int, int, int, int] | None, size: tuple[int, int]) -> None:
    layout = Layout.for_size(size)
    assert box is not None
    left, top, right, bottom = box
    assert left >= layout.margin_x - EDGE and right <= layout.width - layout.margin_x + EDGE
    assert top >= layout.top - EDGE and bottom <= layout.bottom + EDGE  # the subtitle band stays clear


@pytest.mark.parametrize(("size", "title", "body"), CASES)
def test_slide_has_the_frame_size_and_its_text_inside_the_safe_area(
    size: tuple[int, int], title: str, body: str
) -> None:
    slide = render_slide(title, body, size=size)
    assert (slide.size, slide.mode) == (size, "RGB")
    box, inked = _ink(slide, render_slide("", "", size=size))
    _assert_inside_text_area(box, size)
    assert inked > 0.01 * size[0] * size[1]  # real text, not a stray pixel
    assert box is not None and box[3] - box[1] > 0.2 * size[1]  # title and a body wrapped over several lines


@pytest.mark.parametrize(("size", "title", "body"), CASES)
def test_body_text_is_drawn_below_the_title(size: tuple[int, int], title: str, body: str) -> None:
    title_only = render_slide(title, "", size=size)
    title_box, _ = _ink(title_only, render_slide("", "", size=size))
    body_box, inked = _ink(render_slide(title, body, size=size), title_only)
    assert title_box is not None and body_box is not None and inked > 0
    _assert_inside_text_area(body_box, size)


@pytest.mark.parametrize("size", [VERTICAL, LANDSCAPE])
@pytest.mark.parametrize("body", [EN_BODY * 12, ZH_BODY * 12, "x" * 400, "Supercalifragilistic" * 20])
def test_text_too_long_is_shrunk_then_cut_inside_the_area(size: tuple[int, int], body: str) -> None:
    slide = render_slide(EN_TITLE * 3, body, size=size)
    box, _ = _ink(slide, render_slide("", "", size=size))
    _assert_inside_text_area(box, size)


def test_same_input_gives_the_same_png_bytes(tmp_path: Path) -> None:
    first = write_slide(tmp_path / "a.png", ZH_TITLE, ZH_BODY, palette=PALETTES[2])
    second = write_slide(tmp_path / "b.png", ZH_TITLE, ZH_BODY, palette=PALETTES[2])
    assert first.read_bytes() == second.read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.png", "b.png"]  # no temporary files left
    with Image.open(first) as image:
        assert (image.format, image.size) == ("PNG", VERTICAL)


def test_background_is_a_gradient_of_the_palette() -> None:
    palette = PALETTES[1]
    slide = render_slide("", "", size=VERTICAL, palette=palette)
    assert slide.getpixel((540, 0)) == pytest.approx(palette.top, abs=2)
    assert slide.getpixel((540, 1919)) == pytest.approx(palette.bottom, abs=2)
    assert render_slide("", "", size=VERTICAL, palette=PALETTES[0]).tobytes() != slide.tobytes()


def test_chinese_with_a_latin_only_font_is_refused(latin_only_font: Path) -> None:
    font = find_font("Latin", font_file=latin_only_font)
    with pytest.raises(EngineError, match="cannot draw"):
        render_slide(ZH_TITLE, "", font=font)


def test_symbols_the_font_cannot_draw_are_left_out() -> None:
    with_emoji = render_slide("Launch day 🚀", "Ready 🎉 now", size=LANDSCAPE)
    without = render_slide("Launch day", "Ready now", size=LANDSCAPE)
    if find_font("🚀").missing("🚀🎉"):
        assert with_emoji.tobytes() == without.tobytes()
    else:
        assert with_emoji.tobytes() != without.tobytes()
