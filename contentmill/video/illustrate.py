"""Offline pictures: with no image model and no key, each scene gets an illustration built around the icon whose
description means most nearly what the scene says (MiniLM, the bundled sentence model, over Font Awesome Free's
labels and search terms), on the scene's palette, with the scene's keyword in large type behind it.

The icons' vectors ship in the package (``data/icons/``, written by ``scripts/icon_vectors.py``); for another
version of the icon set they are computed once and kept in the data directory. Scenes of
one video get different icons. Matching is by English meaning: a Chinese scene is matched by its topic, caption
and narration as they are, which MiniLM reads poorly, so its icon is a weaker fit.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from contentmill.files import atomic_target
from contentmill.media import PALETTES, Font, Palette
from contentmill.media.icons import Icon, draw_icon, icon_set, icon_set_version
from contentmill.media.text import is_cjk, word_starts
from contentmill.providers.sentence import SentenceEmbedder, Vector

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_COMMON = frozenset(
    "about after again also always another around because before being between both could does doing down during "
    "each every from have having here into itself just like made make many more most much never only other over "
    "same should some such than that their them then there these they this those through under until very what "
    "when where which while will with would your".split()
)


@lru_cache(maxsize=2)
def _embedder() -> SentenceEmbedder:
    return SentenceEmbedder()


def shipped_vectors_path() -> Path:
    """Where the package keeps the icons' vectors for the icon-set version it was built with
    (``scripts/icon_vectors.py`` writes them)."""
    return Path(__file__).resolve().parents[1] / "data" / "icons" / f"fontawesomefree-{icon_set_version()}-minilm.npy"


def icon_vectors(data_dir: Path) -> Vector:
    """One normalized MiniLM vector per icon of ``icon_set()``: the package's, or for another version of the icon
    set computed once (a minute on two cores) and kept in ``data_dir/icons``."""
    icons = icon_set()
    for path in (shipped_vectors_path(), data_dir / "icons" / shipped_vectors_path().name):
        if path.is_file():
            vectors: Vector = np.load(path).astype(np.float32)
            if vectors.shape[0] == len(icons):
                return vectors
    vectors = _embedder().encode([icon.description for icon in icons])
    with atomic_target(path) as partial, partial.open("wb") as handle:  # another process may be reading it
        np.save(handle, vectors)
    return vectors


def pick_icons(texts: Sequence[str], data_dir: Path, taken_names: Sequence[str] = ()) -> list[Icon]:
    """The icon that means most nearly what each text says, no icon twice in one video (nor one of
    ``taken_names``, the icons other scenes already show)."""
    icons, vectors = icon_set(), icon_vectors(data_dir)
    scores = _embedder().encode(list(texts)) @ vectors.T
    chosen: list[Icon] = []
    taken = {index for index, icon in enumerate(icons) if icon.name in taken_names or not icon.pictorial}
    for row in scores:
        for index in np.argsort(-row):
            if int(index) not in taken:
                taken.add(int(index))
                chosen.append(icons[int(index)])
                break
    return chosen


def keyword(narration: str, caption: str, topic: str = "") -> str:
    """The scene's word to set large: the caption's longest uncommon word that the topic does not already say (the
    narration's when the caption has none; Chinese: the caption's longest word, by jieba)."""
    if any(is_cjk(char) for char in caption):
        bounds = sorted(word_starts(caption) | {len(caption)})
        words = [caption[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        words = [w for w in words if len(w) > 1 and all(is_cjk(char) for char in w)]
        return max(words, key=len)[:4] if words else ""
    said = [w.lower() for w in _WORD.findall(topic)]

    def told(word: str) -> bool:  # the topic says it already, maybe in the plural ("octopus", "octopuses")
        return any(os.path.commonprefix([word, t]) in (word, t) or len(os.path.commonprefix([word, t])) >= max(
            4, min(len(word), len(t)) - 2) for t in said)

    for text in (caption, narration):
        words = [w for w in _WORD.findall(text) if w.lower() not in _COMMON and not told(w.lower())]
        if words:
            return max(words, key=len).upper()
    return ""


def illustration(icon: Icon, word: str, size: tuple[int, int], palette: Palette, font: Font) -> Image.Image:
    """A picture of ``size``: the palette's gradient, a halo and the icon in its accent colour a little below the
    middle, and ``word`` in large pale type across the frame behind them."""
    width, height = size
    side = min(width, height)
    mask = Image.linear_gradient("L").resize(size, Image.Resampling.BILINEAR)
    image = Image.composite(Image.new("RGB", size, palette.bottom), Image.new("RGB", size, palette.top), mask)
    centre = (width // 2, round(height * 0.6))
    if word:
        layer = Image.new("L", size, 0)
        loaded = font.load(max(12, round(side * 0.3)))
        while loaded.size > 12 and loaded.getlength(word) > width * 0.94:
            loaded = font.load(round(loaded.size * 0.9))
        ImageDraw.Draw(layer).text(centre, word, font=loaded, fill=52, anchor="mm")
        image.paste(Image.new("RGB", size, palette.body), (0, 0), layer)
    halo = Image.new("L", size, 0)
    radius = round(side * 0.3)
    ImageDraw.Draw(halo).ellipse((centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius),
                                 fill=70)
    image.paste(Image.new("RGB", size, palette.accent), (0, 0), halo.filter(ImageFilter.GaussianBlur(side * 0.05)))
    glyph = draw_icon(icon, round(side * 0.42), palette.accent)
    shadow = Image.new("RGBA", glyph.size, (0, 0, 0, 0))
    shadow.putalpha(glyph.getchannel("A").point(lambda a: a // 2).filter(ImageFilter.GaussianBlur(side * 0.012)))
    offset = (centre[0] - glyph.width // 2, centre[1] - glyph.height // 2)
    image.paste(shadow, (offset[0] + round(side * 0.012), offset[1] + round(side * 0.02)), shadow)
    image.paste(glyph, offset, glyph)
    return image


def scene_palette(number: int) -> Palette:
    return PALETTES[number % len(PALETTES)]
