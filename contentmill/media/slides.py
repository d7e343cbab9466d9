"""One still slide per scene: a title and its on-screen text on a quiet gradient or over the scene's picture.

A picture fills the frame (cover-cropped: scaled to cover it, the overflow cut evenly), darkened at the top
where the text sits and at the bottom under the subtitles, so white text reads on any picture.

Text wraps by words in Latin scripts and by characters in CJK, shrinks (down to a readable minimum) until it
fits the text area above the subtitle band, and is cut with an ellipsis only past that. The same input always
gives the same pixels, so slides can be cached and compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from contentmill.files import atomic_target
from contentmill.media.fonts import Font, find_font
from contentmill.media.layout import VERTICAL, Layout
from contentmill.media.text import normalize, wrap

RGB = tuple[int, int, int]

TITLE_EM = 0.068  # of the frame's short side
BODY_EM = 0.046
SMALLEST_SCALE = 0.6  # body text at 1080 px: 50 px per em at best, 30 px at worst
MAX_TITLE_LINES = 3
ELLIPSIS = "…"
# How dark the scrim over a picture is, top to bottom (0: the picture as it is, 255: black).
SCRIM = (200, 170, 110, 40, 20, 20, 60, 150, 200)


@dataclass(frozen=True, slots=True)
class Palette:
    """Background gradient (top to bottom) and the colours of title, body and the accent bar."""

    top: RGB
    bottom: RGB
    title: RGB
    body: RGB
    accent: RGB


WHITE = (255, 255, 255)
PALETTES = (  # midnight, forest, slate, plum: dark, so white subtitles read on every one
    Palette(top=(18, 24, 48), bottom=(48, 36, 92), title=WHITE, body=(222, 226, 242), accent=(255, 184, 77)),
    Palette(top=(14, 40, 38), bottom=(28, 78, 64), title=WHITE, body=(218, 236, 228), accent=(250, 214, 90)),
    Palette(top=(28, 32, 38), bottom=(60, 68, 82), title=WHITE, body=(224, 229, 236), accent=(94, 234, 212)),
    Palette(top=(44, 20, 44), bottom=(92, 40, 74), title=WHITE, body=(240, 224, 234), accent=(255, 140, 104)),
)


@dataclass(frozen=True, slots=True)
class _Block:
    """Lines of one text style, ready to draw."""

    lines: list[str]
    font: ImageFont.FreeTypeFont
    size: int
    line_height: int
    paragraph_ends: frozenset[int] = frozenset()  # indexes of lines that end a paragraph

    @property
    def height(self) -> int:
        if not self.lines:
            return 0
        gaps = len([index for index in self.paragraph_ends if index < len(self.lines) - 1])
        return len(self.lines) * self.line_height + gaps * self.paragraph_gap

    @property
    def paragraph_gap(self) -> int:
        return round(self.line_height * 0.4)


def render_slide(
    title: str,
    text: str = "",
    *,
    size: tuple[int, int] = VERTICAL,
    font: Font | None = None,
    palette: Palette = PALETTES[0],
    picture: Image.Image | None = None,
    overlay: bool = False,
) -> Image.Image:
    """The slide as an RGB image of ``size``; ``font`` defaults to one that can draw both texts. With a
    ``picture`` the text stands at the top of the text area over it, else centred on the gradient. An
    ``overlay`` is RGBA: the text and the scrim on transparency, to lay over moving footage."""
    layout = Layout.for_size(size)
    chosen = font or find_font(title + " " + text)
    chosen.require(title + text)
    title = normalize(chosen.drawable(title))
    paragraphs = [normalize(chosen.drawable(part)) for part in text.splitlines()]
    paragraphs = [part for part in paragraphs if part]
    if overlay:
        image = Image.new("RGBA", (layout.width, layout.height), (0, 0, 0, 0))
        image.putalpha(_scrim(layout))
    else:
        image = _background(layout, palette) if picture is None else cover(picture, layout)
    title_block, body_block = _fit(title, paragraphs, layout, chosen)
    _draw(ImageDraw.Draw(image), layout, palette, title_block, body_block, centred=picture is None and not overlay)
    return image


def write_slide(
    path: str | Path,
    title: str,
    text: str = "",
    *,
    size: tuple[int, int] = VERTICAL,
    font: Font | None = None,
    palette: Palette = PALETTES[0],
    picture: Image.Image | None = None,
    overlay: bool = False,
) -> Path:
    """Render a slide and write it as PNG, atomically: a reader never sees half a file."""
    target = Path(path)
    image = render_slide(title, text, size=size, font=font, palette=palette, picture=picture, overlay=overlay)
    with atomic_target(target) as partial:
        image.save(partial, format="PNG")
    return target


def _background(layout: Layout, palette: Palette) -> Image.Image:
    """A vertical two-colour gradient: calm behind text, and it survives H.264 without blotches."""
    mask = Image.linear_gradient("L").resize((layout.width, layout.height), Image.Resampling.BILINEAR)
    top = Image.new("RGB", (layout.width, layout.height), palette.top)
    bottom = Image.new("RGB", (layout.width, layout.height), palette.bottom)
    return Image.composite(bottom, top, mask)


def cover(picture: Image.Image, layout: Layout) -> Image.Image:
    """``picture`` scaled to cover the frame, centred, the overflow cut, under a scrim that keeps text legible."""
    frame = ImageOps.fit(picture.convert("RGB"), (layout.width, layout.height), Image.Resampling.BICUBIC)
    return Image.composite(Image.new("RGB", frame.size, (0, 0, 0)), frame, _scrim(layout))


def _scrim(layout: Layout) -> Image.Image:
    """How much black lies over a picture, row by row, as a mask of the frame's size."""
    return Image.frombytes("L", (1, len(SCRIM)), bytes(SCRIM)).resize((layout.width, layout.height),
                                                                      Image.Resampling.BILINEAR)


def _block(lines_of: list[str], font: Font, size: int, width: int, spacing: float) -> _Block:
    """Wrap each paragraph to ``width`` at ``size`` pixels per em."""
    loaded = font.load(size)
    lines: list[str] = []
    ends: set[int] = set()
    for paragraph in lines_of:
        lines.extend(wrap(paragraph, width, loaded.getlength))
        ends.add(len(lines) - 1)
    return _Block(lines, loaded, size, round(size * spacing), frozenset(ends))


def _stack_height(title: _Block, body: _Block, layout: Layout) -> int:
    gap = _title_gap(title, body, layout)
    return title.height + gap + body.height


def _title_gap(title: _Block, body: _Block, layout: Layout) -> int:
    """Space under the title for the accent bar (and before the body, when there is one)."""
    if not title.lines:
        return 0
    bar = _bar_height(layout) + round(title.size * 0.45)
    return bar + (round(body.size * 0.9) if body.lines else 0)


def _bar_height(layout: Layout) -> int:
    return max(3, round(layout.base * 0.008))


def _fit(title: str, paragraphs: list[str], layout: Layout, font: Font) -> tuple[_Block, _Block]:
    """The largest sizes (in 5% steps) at which everything fits the text area; else cut at the smallest."""
    room = layout.bottom - layout.top
    scale = 1.0
    while True:
        title_size = round(layout.base * TITLE_EM * scale)
        stroke = _stroke(title_size)
        title_block = _block([title] if title else [], font, title_size, layout.text_width - 2 * stroke, 1.25)
        body_block = _block(paragraphs, font, round(layout.base * BODY_EM * scale), layout.text_width, 1.45)
        fits = (
            len(title_block.lines) <= MAX_TITLE_LINES
            and _stack_height(title_block, body_block, layout) <= room
        )
        if fits or scale <= SMALLEST_SCALE + 1e-9:
            break
        scale -= 0.05
    if fits:
        return title_block, body_block
    title_block = _truncate(title_block, MAX_TITLE_LINES, layout.text_width - 2 * _stroke(title_block.size))
    body_room = room - title_block.height - _title_gap(title_block, body_block, layout)
    return title_block, _truncate(body_block, max(0, body_room // body_block.line_height), layout.text_width)


def _truncate(block: _Block, max_lines: int, width: int) -> _Block:
    """Keep ``max_lines`` lines and end the last one with an ellipsis that still fits ``width``."""
    if len(block.lines) <= max_lines:
        return block
    lines = block.lines[:max_lines]
    if lines:
        last = lines[-1].rstrip()
        while last and block.font.getlength(last + ELLIPSIS) > width:
            last = last[:-1].rstrip()
        lines[-1] = last + ELLIPSIS
    ends = frozenset(index for index in block.paragraph_ends if index < len(lines))
    return _Block(lines, block.font, block.size, block.line_height, ends)


def _stroke(size: int) -> int:
    """A hairline outline in the text colour: a bolder title from a Regular-only font."""
    return max(1, round(size / 40))


def _draw(draw: ImageDraw.ImageDraw, layout: Layout, palette: Palette, title: _Block, body: _Block,
          centred: bool = True) -> None:
    """Draw the stack left-aligned at the margin: centred a little above the middle of the text area, or at
    its top (over a picture, which then shows below the text)."""
    room = layout.bottom - layout.top
    share = 0.42 if centred else 0.0
    y = layout.top + max(0, round((room - _stack_height(title, body, layout)) * share))
    x = layout.margin_x
    if title.lines:
        stroke = _stroke(title.size)
        y = _draw_lines(draw, x + stroke, y, title, palette.title, stroke)
        y += round(title.size * 0.45)
        bar = _bar_height(layout)
        draw.rounded_rectangle(
            (x, y, x + round(layout.base * 0.14), y + bar), radius=bar // 2, fill=palette.accent
        )
        y += bar + round(body.size * 0.9)
    _draw_lines(draw, x, y, body, palette.body, 0)


def _draw_lines(draw: ImageDraw.ImageDraw, x: int, y: int, block: _Block, colour: RGB, stroke: int) -> int:
    """Each line on its own baseline (ink centred in the line box); returns the y below the block."""
    for index, line in enumerate(block.lines):
        baseline = y + (block.line_height - block.size) // 2 + round(block.size * 0.88)
        draw.text(
            (x, baseline),
            line,
            font=block.font,
            fill=colour,
            anchor="ls",
            stroke_width=stroke,
            stroke_fill=colour,
        )
        y += block.line_height
        if index in block.paragraph_ends and index < len(block.lines) - 1:
            y += block.paragraph_gap
    return y
