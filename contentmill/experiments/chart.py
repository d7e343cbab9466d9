"""The compare tool's chart: cost (x) against quality (y), one labelled point per model, drawn with Pillow."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from contentmill.experiments.compare import Comparison

WIDTH, HEIGHT = 900, 560
LEFT, RIGHT, TOP, BOTTOM = 90, 40, 50, 70
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def draw_chart(comparison: Comparison, path: Path, title: str = "Cost against quality") -> Path:
    """Write the chart as a PNG at ``path`` and return it. Models without a quality score sit at 0."""
    points = [(m.model, m.cost_usd, m.quality or 0.0) for m in comparison.models if m.calls > m.errors]
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    pen = ImageDraw.Draw(image)
    small, large = _font(13), _font(18)
    x0, y0, x1, y1 = LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM
    pen.rectangle((x0, y0, x1, y1), outline="#444444")
    pen.text((WIDTH / 2, 18), title, fill="black", font=large, anchor="mm")
    pen.text((WIDTH / 2, HEIGHT - 22), f"cost (USD, {comparison.prompts} prompts x {comparison.runs} runs)",
             fill="black", font=small, anchor="mm")
    pen.text((x0 - 40, y0 - 16), f"quality ({comparison.scorer})", fill="black", font=small, anchor="lm")
    top_cost = max((c for _, c, _ in points), default=0.0) * 1.15 or 1e-6

    def at(cost: float, quality: float) -> tuple[float, float]:
        return x0 + (x1 - x0) * cost / top_cost, y1 - (y1 - y0) * quality

    for step in range(6):
        share = step / 5
        y = y1 - (y1 - y0) * share
        pen.line((x0, y, x1, y), fill="#e5e5e5")
        pen.text((x0 - 8, y), f"{share:.1f}", fill="black", font=small, anchor="rm")
        x = x0 + (x1 - x0) * share
        pen.line((x, y1, x, y1 + 5), fill="#444444")
        pen.text((x, y1 + 16), f"{top_cost * share:.2g}", fill="black", font=small, anchor="mm")
    for index, (model, cost, quality) in enumerate(points):
        x, y = at(cost, quality)
        colour = COLOURS[index % len(COLOURS)]
        pen.ellipse((x - 7, y - 7, x + 7, y + 7), fill=colour, outline="black")
        pen.text((x + 11, y - 10 - 14 * (index % 2)), model, fill=colour, font=small, anchor="lm")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
