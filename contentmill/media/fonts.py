"""Finding a font that can really draw a text, for slides and burned-in subtitles.

The order is: the configured file (``font_file``, the CONTENTMILL_FONT_FILE setting), then Noto Sans CJK
from the ``noto-cjk-sans-otc`` package, then the system's fonts (fc-match, then well-known paths).
Coverage is checked glyph by glyph: a character is drawable when the font renders it differently from its
"missing glyph" box, which is what a viewer would actually see, whatever the font's name promises.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

from contentmill.errors import EngineError
from contentmill.media.text import has_cjk, is_cjk

SETTING = "CONTENTMILL_FONT_FILE"
PIP_HINT = "pip install noto-cjk-sans-otc"
APT_HINT = "apt-get install fonts-noto-cjk"

_PROBE_SIZE = 20
_UNMAPPED = chr(0x10FFFD)  # a private-use code point no font maps: renders as the font's .notdef glyph
_SHOWN_MISSING = 12

# Regional faces of CJK collections, best first for each region (matched as whole words of the family name).
_REGION_TAGS = {
    "sc": ("SC", "Hans", "GB", "CN"),
    "tc": ("TC", "Hant", "TW"),
    "hk": ("HK",),
    "jp": ("JP", "Japanese", "Hiragino"),
    "kr": ("KR", "Korean"),
}
_WELL_KNOWN = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/wenquanyi/wqy-microhei/wqy-microhei.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/Hiragino Sans GB.ttc",
    "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
    "C:/Windows/Fonts/msyh.ttc",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/System/Library/Fonts/Helvetica.ttc",
    "C:/Windows/Fonts/arial.ttf",
)


@dataclass(frozen=True, slots=True)
class Font:
    """One face of a font file (``index`` picks the face inside a .ttc collection)."""

    path: Path
    index: int = 0
    family: str = ""
    style: str = ""

    def load(self, size: int) -> ImageFont.FreeTypeFont:
        """This face at ``size`` pixels per em, for Pillow."""
        return _load(self.path, self.index, size)

    def missing(self, text: str) -> str:
        """The characters of ``text`` this face has no glyph for, each once, in order of appearance."""
        coverage = _coverage(self.path, self.index)
        return "".join(char for char in dict.fromkeys(text) if _checked(char) and not coverage.draws(char))

    def missing_needed(self, text: str) -> str:
        """The missing characters a reader cannot do without: letters, digits, punctuation, currency, math."""
        return "".join(char for char in self.missing(text) if _needed(char))

    def drawable(self, text: str) -> str:
        """``text`` without the characters this face cannot draw, which would show as boxes.

        After :meth:`require` passes, only optional symbols (emoji, dingbats) are left out.
        """
        absent = set(self.missing(text))
        return "".join(char for char in text if char not in absent)

    def require(self, text: str) -> None:
        """Raise a clear EngineError when this face cannot draw the letters of ``text``."""
        lacking = self.missing_needed(text)
        if lacking:
            raise _cannot_draw(f"the font {self.path}", lacking, configured=True)


class _Coverage:
    """Which characters one face draws, checked once each against its .notdef glyph."""

    def __init__(self, font: ImageFont.FreeTypeFont) -> None:
        self._font = font
        self._notdef = self._signature(_UNMAPPED)
        self._known: dict[str, bool] = {}

    def _signature(self, char: str) -> tuple[object, ...]:
        mask = self._font.getmask(char)
        return mask.size, bytes(mask), self._font.getbbox(char)

    def draws(self, char: str) -> bool:
        known = self._known.get(char)
        if known is None:
            known = self._known[char] = self._signature(char) != self._notdef
        return known


def _checked(char: str) -> bool:
    """Spaces, controls and combining marks need no glyph of their own (shaping composes the marks)."""
    return unicodedata.category(char)[0] not in "ZCM"


def _needed(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] in "LNP" or category in ("Sc", "Sm")


@lru_cache(maxsize=64)
def _load(path: Path, index: int, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size, index=index)


@lru_cache(maxsize=32)
def _coverage(path: Path, index: int) -> _Coverage:
    return _Coverage(
        ImageFont.truetype(str(path), _PROBE_SIZE, index=index, layout_engine=ImageFont.Layout.BASIC)
    )


def _face_count(path: Path) -> int:
    """How many faces the file holds: a .ttc/.otc collection says so in its header, other files hold one."""
    with path.open("rb") as handle:
        header = handle.read(12)
    if len(header) == 12 and header[:4] == b"ttcf":
        (count,) = struct.unpack(">I", header[8:12])
        return max(1, min(int(count), 64))
    return 1


@lru_cache(maxsize=64)
def faces(path: Path) -> tuple[Font, ...]:
    """Every face of a font file with its family and style names; OSError when it is not a readable font."""
    found = []
    for index in range(_face_count(path)):
        family, style = ImageFont.truetype(str(path), _PROBE_SIZE, index=index).getname()
        found.append(Font(path, index, family or path.stem, style or ""))
    return tuple(found)


def region_for(text: str, language: str | None = None) -> str:
    """Which regional face of a CJK collection suits the text: its language if given, else its script."""
    if language:
        tag = language.strip().lower().replace("_", "-")
        if tag.startswith("ja"):
            return "jp"
        if tag.startswith("ko"):
            return "kr"
        if tag in ("zh-tw", "zh-hant", "zh-hant-tw", "zh-mo"):
            return "tc"
        if tag in ("zh-hk", "zh-hant-hk"):
            return "hk"
        return "sc"
    codes = [ord(char) for char in text]
    if any(0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF for code in codes):
        return "jp"
    if any(0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF for code in codes) and not any(
        0x4E00 <= code <= 0x9FFF for code in codes
    ):
        return "kr"
    return "sc"


def _ranked(candidates: Sequence[Font], region: str) -> list[Font]:
    """The faces in order of preference: the region's own face first, monospaced faces last."""
    tags = _REGION_TAGS[region]

    def rank(face: Font) -> tuple[int, int, int]:
        words = face.family.split()
        tag_rank = next((position for position, tag in enumerate(tags) if tag in words), len(tags))
        return tag_rank, int("Mono" in words), face.index

    return sorted(candidates, key=rank)


def packaged_font() -> Path | None:
    """Noto Sans CJK (Regular) from the ``noto-cjk-sans-otc`` package, if it is installed."""
    try:
        import noto_cjk_sans_otc
    except ImportError:
        return None
    path = Path(str(noto_cjk_sans_otc.FONT_PATH))
    return path if path.is_file() else None


@lru_cache(maxsize=2)
def system_fonts(cjk: bool) -> tuple[Path, ...]:
    """Installed font files worth trying: fontconfig's best sans-serif matches, then well-known paths."""
    found: list[Path] = []
    fc_match = shutil.which("fc-match")
    if fc_match:
        pattern = "sans-serif:lang=zh-cn" if cjk else "sans-serif"
        try:
            done = subprocess.run(
                [fc_match, "-s", "--format=%{file}\n", pattern], capture_output=True, text=True, timeout=20
            )
            found.extend(Path(line) for line in done.stdout.splitlines()[:8] if line.strip())
        except (OSError, subprocess.TimeoutExpired):
            pass
    found.extend(Path(path) for path in _WELL_KNOWN)
    return tuple(dict.fromkeys(path for path in found if path.is_file()))


def default_search(text: str) -> list[Path]:
    """Where to look when no font is configured: the packaged Noto Sans CJK, then the system's fonts."""
    packaged = packaged_font()
    return [*([packaged] if packaged else []), *system_fonts(has_cjk(text))]


def find_font(
    text: str = "",
    *,
    font_file: str | Path | None = None,
    language: str | None = None,
    search: Iterable[str | Path] | None = None,
) -> Font:
    """A face that can draw every letter of ``text``, or an EngineError that says what to install or set.

    ``font_file`` (the CONTENTMILL_FONT_FILE setting) is used when given, and only it: a configured font that
    cannot draw the text is an error, not silently replaced. Otherwise ``search`` (default: the packaged Noto
    Sans CJK, then the system's fonts) is tried in order. Emoji and other symbols a face lacks do not count.
    """
    region = region_for(text, language)
    if font_file is not None:
        path = Path(font_file).expanduser()
        face, lacking = _best_face(_faces_of(path), text, region)
        if lacking:
            raise _cannot_draw(f"the font {path} ({SETTING})", lacking, configured=True)
        return face
    closest: str | None = None
    for candidate in search if search is not None else default_search(text):
        try:
            candidate_faces = faces(Path(candidate))
        except OSError:
            continue  # not a font Pillow can read: try the next one
        face, lacking = _best_face(candidate_faces, text, region)
        if not lacking:
            return face
        closest = lacking if closest is None or len(lacking) < len(closest) else closest
    if closest is None:
        raise EngineError(
            f"no usable font was found: install Noto Sans CJK with `{PIP_HINT}` (or `{APT_HINT}`), "
            f"or set {SETTING} to a TrueType/OpenType font file"
        )
    raise _cannot_draw("no installed font", closest, configured=False)


def _faces_of(path: Path) -> tuple[Font, ...]:
    """The faces of a configured font file, or an error naming the file and the setting."""
    if not path.is_file():
        raise EngineError(f"the font file {path} does not exist: fix {SETTING} or unset it")
    try:
        return faces(path)
    except OSError as exc:
        raise EngineError(
            f"{path} is not a font file that can be read ({exc}): set {SETTING} to a TrueType/OpenType font"
        ) from None


def _best_face(candidates: Sequence[Font], text: str, region: str) -> tuple[Font, str]:
    """The preferred face drawing all of ``text``, else the one missing the fewest needed characters."""
    best: tuple[Font, str] | None = None
    for face in _ranked(candidates, region):
        lacking = face.missing_needed(text)
        if not lacking:
            return face, ""
        if best is None or len(lacking) < len(best[1]):
            best = (face, lacking)
    assert best is not None, "a font file has at least one face"
    return best


def _cannot_draw(where: str, lacking: str, *, configured: bool) -> EngineError:
    shown = lacking[:_SHOWN_MISSING] + ("..." if len(lacking) > _SHOWN_MISSING else "")
    codes = ", ".join(f"U+{ord(char):04X}" for char in lacking[:_SHOWN_MISSING])
    if any(is_cjk(char) for char in lacking):
        install = f"install Noto Sans CJK with `{PIP_HINT}` (or `{APT_HINT}`)"
        fix = (
            f"set {SETTING} to a font that covers them, or unset it after you {install}"
            if configured
            else f"{install}, or set {SETTING} to a font file that covers them"
        )
    else:
        fix = f"set {SETTING} to a font file that covers them"
    return EngineError(f"{where} cannot draw {shown!r} ({codes}): {fix}")
