"""Charts drawn on the server as SVG: no script, no CDN, readable without JavaScript and by screen readers (each
bar and mark carries a ``<title>``). The SVG scales to its container through its ``viewBox``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape

from markupsafe import Markup

from contentmill.ledger import Anomaly
from contentmill.server.web.overview import Series, usd

# Tableau 10: distinct for the common kinds of colour blindness, and in print.
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
WIDTH, HEIGHT = 960, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 18, 30


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least ``value`` (axis tops)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return float(next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value * (1 - 1e-12)))


def axis_usd(value: float, top: float) -> str:
    """An axis tick: as many decimals as the axis's scale needs, no more."""
    decimals = max(0, 2 - math.floor(math.log10(top))) if top > 0 else 0
    return f"${value:,.{decimals}f}"


def _label(moment: datetime, bucket: str) -> str:
    return moment.strftime("%m-%d %H:00" if bucket == "hour" else "%m-%d")


def stacked_bars(starts: Sequence[datetime], series: Sequence[Series], anomalies: Sequence[Anomaly],
                 bucket: str) -> Markup:
    """Spend per bucket, one stacked bar per bucket and one colour per series; anomalies as marked triangles."""
    count = max(len(starts), 1)
    stacks = [sum(s.values[i] for s in series) for i in range(len(starts))]
    top = nice_ceiling(max(stacks, default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / count
    bar = max(step * 0.8, 1.0)

    def y(value: float) -> float:
        return TOP + plot_h - value / top * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="spend per {bucket}, stacked by group">']
    for tick in range(5):
        value = top * tick / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                     f'stroke="#e3e7eb"/>')
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
                     f'{escape(axis_usd(value, top))}</text>')
    every = max(1, math.ceil(count / 8))
    for index, start in enumerate(starts):
        x = LEFT + index * step + (step - bar) / 2
        base = 0.0
        for number, line in enumerate(series):
            value = line.values[index]
            if value <= 0:
                continue
            height = value / top * plot_h
            parts.append(f'<rect x="{x:.1f}" y="{y(base + value):.1f}" width="{bar:.1f}" height="{height:.1f}" '
                         f'fill="{colour(number)}"><title>{escape(line.name)}, {_label(start, bucket)}: '
                         f'{escape(usd(value))}</title></rect>')
            base += value
        if index % every == 0:
            parts.append(f'<text class="axis" x="{LEFT + index * step + step / 2:.1f}" y="{HEIGHT - 10}" '
                         f'text-anchor="middle">{_label(start, bucket)}</text>')
    for mark in anomalies:
        x = LEFT + mark.index * step + step / 2
        tip = y(stacks[mark.index]) - 4
        parts.append(f'<path class="anomaly" d="M{x - 6:.1f},{tip - 10:.1f} L{x + 6:.1f},{tip - 10:.1f} '
                     f'L{x:.1f},{tip:.1f} Z" fill="#b3261e"><title>anomaly: {escape(str(mark.subject))} spent '
                     f'{escape(usd(mark.value))} at {_label(starts[mark.index], bucket)}, z = {mark.z:.1f} '
                     f'(usual {escape(usd(mark.mean))})</title></path>')
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#8a96a3"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
