"""Icons for slides without a picture: Font Awesome Free's solid set, drawn with Pillow from its icon font.

The set ships through PyPI in ``fontawesomefree`` (icons CC BY 4.0, font SIL OFL 1.1, code MIT): 1,395 solid
icons, each with a label and search terms (``metadata/icons.json``), which is what they are matched by. Drawing a
glyph of ``fa-solid-900.ttf`` needs no SVG renderer (no libcairo), and the same icon always gives the same pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

import yaml
from PIL import Image, ImageDraw, ImageFont

from contentmill.errors import EngineError

RGB = tuple[int, int, int]
# Icons of letters, digits, signs and interface glyphs say nothing about a scene: never an illustration.
UNPICTORIAL = frozenset({"alphabet", "numbers", "punctuation-symbols", "text-formatting", "spinners", "toggle",
                         "arrows", "editing"})
ATTRIBUTION = "Icons: Font Awesome Free (fontawesome.com), CC BY 4.0"


@dataclass(frozen=True, slots=True)
class Icon:
    name: str
    label: str
    codepoint: int
    terms: tuple[str, ...]
    pictorial: bool = True  # False for letters, digits, currency signs and interface glyphs

    @property
    def description(self) -> str:
        """What the icon shows, in words: what a scene's text is compared with."""
        return f"{self.label}: {', '.join(self.terms)}" if self.terms else self.label


def _root() -> Path:
    try:
        import fontawesomefree
    except ImportError:
        raise EngineError("the icon set is not installed: pip install fontawesomefree") from None
    return Path(fontawesomefree.__file__).parent / "static" / "fontawesomefree"


def icon_set_version() -> str:
    return version("fontawesomefree")


@lru_cache(maxsize=1)
def icon_set() -> tuple[Icon, ...]:
    """Every free solid icon, in the metadata's order."""
    path = _root() / "metadata" / "icons.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EngineError(f"cannot read the icon set's metadata {path} ({exc}): reinstall fontawesomefree") from None
    glyphs = _unpictorial()
    icons = []
    for name, entry in raw.items():
        if "solid" not in entry.get("free", ()):
            continue
        terms = tuple(str(t) for t in (entry.get("search") or {}).get("terms") or ())
        pictorial = name not in glyphs and not name.endswith("-sign") and len(str(entry.get("label") or "")) > 1
        icons.append(Icon(name, str(entry.get("label") or name), int(entry["unicode"], 16), terms, pictorial))
    return tuple(icons)


def _unpictorial() -> frozenset[str]:
    """The icons of the UNPICTORIAL categories (``metadata/categories.yml``)."""
    path = _root() / "metadata" / "categories.yml"
    try:
        categories = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise EngineError(f"cannot read the icon set's categories {path} ({exc}): reinstall fontawesomefree") from None
    return frozenset(name for category, entry in categories.items() if category in UNPICTORIAL
                     for name in (entry or {}).get("icons") or ())


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont:
    path = _root() / "webfonts" / "fa-solid-900.ttf"
    try:
        return ImageFont.truetype(str(path), size)
    except OSError as exc:
        raise EngineError(f"cannot load the icon font {path} ({exc}): reinstall fontawesomefree") from None


def draw_icon(icon: Icon, size: int, colour: RGB) -> Image.Image:
    """The icon as an RGBA image ``size`` pixels square, centred, on transparency."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    font = _font(round(size * 0.86))
    ImageDraw.Draw(image).text((size / 2, size / 2), chr(icon.codepoint), font=font, fill=(*colour, 255),
                               anchor="mm")
    return image
