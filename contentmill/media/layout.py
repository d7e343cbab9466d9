"""Frame geometry shared by slides and burned-in subtitles, so slide text never sits under a subtitle.

Vertical video (1080x1920) keeps wider bands free at the top and bottom, where phone apps draw their own
buttons and captions; landscape (1920x1080) needs less.
"""

from __future__ import annotations

from dataclasses import dataclass

VERTICAL = (1080, 1920)
LANDSCAPE = (1920, 1080)


@dataclass(frozen=True, slots=True)
class Layout:
    """Pixel boxes of one frame size: the slide's text area and the subtitle band below it."""

    width: int
    height: int

    @classmethod
    def for_size(cls, size: tuple[int, int]) -> Layout:
        width, height = size
        if width < 64 or height < 64:
            raise ValueError(f"a frame must be at least 64x64 pixels (got {width}x{height})")
        return cls(width, height)

    @property
    def vertical(self) -> bool:
        return self.height > self.width

    @property
    def base(self) -> int:
        """The short side: type sizes scale with it, so 1080x1920 and 1920x1080 read alike."""
        return min(self.width, self.height)

    @property
    def margin_x(self) -> int:
        return round(self.width * (0.08 if self.vertical else 0.07))

    @property
    def top(self) -> int:
        """First row of the slide's text area."""
        return round(self.height * (0.10 if self.vertical else 0.09))

    @property
    def subtitle_margin_v(self) -> int:
        """Distance from the frame's bottom edge to the subtitles' baseline area."""
        return round(self.height * (0.13 if self.vertical else 0.07))

    @property
    def subtitle_em(self) -> int:
        """Subtitle letter size (pixels per em) before it shrinks to fit the widest line."""
        return round(self.base * 0.048)

    @property
    def bottom(self) -> int:
        """Last row of the slide's text area: above two subtitle lines and their margin."""
        band = self.subtitle_margin_v + round(2 * 1.6 * self.subtitle_em) + round(self.base * 0.04)
        return self.height - band

    @property
    def text_width(self) -> int:
        return self.width - 2 * self.margin_x
