"""Font discovery on this machine's real fonts: coverage is checked glyph by glyph, errors say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from contentmill.errors import EngineError
from contentmill.media.fonts import Font, faces, find_font, packaged_font

ZH = "每个产品页面都需要一段简短清晰的介绍。"
EN = "Every product page needs a short and clear description."
INSTALL_HINTS = ("pip install noto-cjk-sans-otc", "apt-get install fonts-noto-cjk", "CONTENTMILL_FONT_FILE")


@pytest.fixture
def noto() -> Path:
    path = packaged_font()
    if path is None:
        pytest.skip("needs Noto Sans CJK from the noto-cjk-sans-otc package (pip install noto-cjk-sans-otc)")
    return path


def test_chinese_text_gets_the_simplified_chinese_face_of_the_packaged_noto(noto: Path) -> None:
    font = find_font(ZH)
    assert (font.path, font.family) == (noto, "Noto Sans CJK SC")
    assert font.missing(ZH + EN) == ""


@pytest.mark.parametrize(
    ("text", "language", "family"),
    [
        ("こんにちは、世界", None, "Noto Sans CJK JP"),
        ("안녕하세요", None, "Noto Sans CJK KR"),
        ("繁體中文的介紹", "zh-TW", "Noto Sans CJK TC"),
        ("简体中文的介绍", "zh-CN", "Noto Sans CJK SC"),
    ],
)
def test_the_regional_face_follows_the_script_or_the_language(
    noto: Path, text: str, language: str | None, family: str
) -> None:
    assert find_font(text, language=language).family == family


def test_latin_text_finds_a_font_that_draws_it() -> None:
    font = find_font(EN)
    assert font.path.is_file()
    assert font.missing(EN) == ""


def test_a_configured_font_is_used_when_it_draws_the_text(latin_only_font: Path) -> None:
    font = find_font(EN, font_file=latin_only_font)
    assert font == Font(latin_only_font, 0, "DejaVu Sans", "Book")


def test_a_configured_latin_only_font_refuses_chinese_with_what_to_do(latin_only_font: Path) -> None:
    with pytest.raises(EngineError) as caught:
        find_font("价格 10 元", font_file=latin_only_font)
    message = str(caught.value)
    assert str(latin_only_font) in message
    assert "'价格元'" in message and "U+4EF7" in message  # the characters it cannot draw, and only those
    for hint in INSTALL_HINTS:
        assert hint in message


def test_when_no_font_searched_draws_chinese_the_error_names_what_to_install(latin_only_font: Path) -> None:
    with pytest.raises(EngineError, match="no installed font cannot draw") as caught:
        find_font(ZH, search=[latin_only_font])
    for hint in INSTALL_HINTS:
        assert hint in str(caught.value)


def test_coverage_is_read_from_the_glyphs_not_the_file_name(latin_only_font: Path, tmp_path: Path) -> None:
    disguised = tmp_path / "NotoSansCJK-Regular.ttc"
    disguised.symlink_to(latin_only_font)
    assert Font(disguised).missing("中文 and Latin") == "中文"
    with pytest.raises(EngineError, match="cannot draw"):
        find_font(ZH, font_file=disguised)
    noto = packaged_font()
    if noto is not None:  # the next candidate that really draws Chinese is chosen over the disguised one
        assert find_font(ZH + EN, search=[disguised, noto]).path == noto


def test_symbols_a_font_lacks_are_dropped_not_fatal(noto: Path) -> None:
    text = "Launch day 🚀 is here"
    font = find_font(text)
    assert font.missing(text) == "🚀"  # Noto Sans CJK has no emoji
    assert font.missing_needed(text) == ""
    assert font.drawable(text) == "Launch day  is here"


def test_search_skips_files_that_are_not_fonts(latin_only_font: Path, tmp_path: Path) -> None:
    junk = tmp_path / "broken.ttf"
    junk.write_bytes(b"not a font at all")
    assert find_font(EN, search=[junk, tmp_path / "absent.ttf", latin_only_font]).path == latin_only_font


def test_a_configured_file_that_is_missing_or_not_a_font_is_named(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="does not exist: fix CONTENTMILL_FONT_FILE"):
        find_font(EN, font_file=tmp_path / "absent.ttf")
    junk = tmp_path / "junk.otf"
    junk.write_bytes(b"\0" * 64)
    with pytest.raises(EngineError, match="is not a font file that can be read"):
        find_font(EN, font_file=junk)


def test_a_collection_lists_every_face(noto: Path) -> None:
    families = [face.family for face in faces(noto)]
    assert len(families) == 10
    assert {"Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans Mono CJK SC"} <= set(families)
