"""Server-side SVG charts: rendered with the page, no JavaScript, nothing fetched from a CDN.

Pure functions of their data; the output is an SVG string safe to put in a template (every
label is escaped here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2")


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    color: str = ""
    dashed: bool = False


def nice_max(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^k at or above `value` (an axis top that reads well)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        top = step * 10**exponent
        if top >= value:
            return float(top)
    return float(10 ** (exponent + 1))


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}" if value == int(value) else f"{value:.2g}"


def line_chart(
    series: Sequence[Series],
    labels: Sequence[str],
    *,
    title: str,
    unit: str = "",
    width: int = 560,
    height: int = 180,
    y_max: float | None = None,
) -> SafeString:
    """Lines over shared x labels; a None value breaks the line. Empty data draws an empty frame."""
    left, right, top, bottom = 44, 10, 24, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    points = [v for s in series for v in s.values if v is not None]
    top_value = y_max if y_max is not None else nice_max(max(points, default=0.0))
    count = max((len(s.values) for s in series), default=0)

    def x_at(i: int) -> float:
        return left + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y_at(v: float) -> float:
        return top + plot_h - plot_h * min(max(v / top_value, 0.0), 1.0)

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<text class="chart-title" x="{left}" y="14">{escape(title)}</text>',
    ]
    for fraction in (0, 0.5, 1):
        y = top + plot_h - plot_h * fraction
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(_fmt(top_value * fraction))}{escape(unit) if fraction == 1 else ''}</text>"
        )
    if labels:
        for i in sorted({0, len(labels) // 2, len(labels) - 1}):
            anchor = "start" if i == 0 else "end" if i == len(labels) - 1 else "middle"
            parts.append(
                f'<text class="axis" x="{x_at(i):.1f}" y="{height - 6}" text-anchor="{anchor}">'
                f"{escape(labels[i])}</text>"
            )
    if not points:
        parts.append(
            f'<text class="chart-empty" x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle">'
            "No data in this window</text>"
        )
    for n, s in enumerate(series):
        color = s.color or PALETTE[n % len(PALETTE)]
        runs: list[list[str]] = [[]]
        for i, v in enumerate(s.values):
            if v is None:
                runs.append([])
            else:
                runs[-1].append(f"{x_at(i):.1f},{y_at(v):.1f}")
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        for run in runs:
            if len(run) > 1:
                parts.append(
                    f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{" ".join(run)}"/>'
                )
            elif run:
                cx, cy = run[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}"/>')
    legend_x = width - right
    for n, s in reversed(list(enumerate(series))):
        color = s.color or PALETTE[n % len(PALETTE)]
        text_w = 7 * len(s.name) + 16
        legend_x -= text_w
        parts.append(f'<rect x="{legend_x}" y="6" width="10" height="10" rx="2" fill="{color}"/>')
        parts.append(f'<text class="legend" x="{legend_x + 14}" y="15">{escape(s.name)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308  every label above is escaped


def bar_chart(
    bars: Sequence[tuple[str, float]], *, title: str, unit: str = "", width: int = 560, bar_height: int = 18
) -> SafeString:
    """Horizontal bars, largest scale first as given; labels on the left, values on the right."""
    left, right, top = 170, 60, 24
    height = top + max(len(bars), 1) * (bar_height + 6) + 6
    top_value = nice_max(max((v for _, v in bars), default=0.0))
    plot_w = width - left - right
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<text class="chart-title" x="4" y="14">{escape(title)}</text>',
    ]
    if not bars:
        parts.append(f'<text class="chart-empty" x="{width / 2}" y="{top + 14}" text-anchor="middle">No data</text>')
    for i, (label, value) in enumerate(bars):
        y = top + i * (bar_height + 6)
        w = plot_w * min(value / top_value, 1.0)
        short = label if len(label) <= 24 else label[:23] + "…"
        baseline = y + bar_height - 5
        parts.append(f'<text class="axis" x="{left - 6}" y="{baseline}" text-anchor="end">{escape(short)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_height}" rx="3" fill="{PALETTE[0]}"/>')
        shown = escape(_fmt(value)) + escape(unit)
        parts.append(f'<text class="axis" x="{left + w + 6:.1f}" y="{baseline}">{shown}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308  every label above is escaped
