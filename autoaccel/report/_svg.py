"""The report's drawing: inline SVG axes, lines and bars, with the page's sizes and colours
(no network, no JavaScript)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "COLOURS",
    "HEIGHT",
    "MARGIN",
    "OUTCOME_COLOURS",
    "WIDTH",
    "Axes",
    "bars",
    "esc",
    "fmt",
    "polyline",
    "ratio_text",
    "svg",
    "ticks",
]

WIDTH, HEIGHT = 560, 300
MARGIN = {"left": 70, "right": 20, "top": 30, "bottom": 45}
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"]
OUTCOME_COLOURS = {"ok": "#1f77b4", "pruned": "#aaaaaa", "oom": "#d62728"}


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * step:
            step *= factor
            break
    start = math.floor(low / step) * step
    return [
        start + i * step
        for i in range(int((high - start) / step) + 2)
        if start + i * step <= high + step / 2
    ]


def ratio_text(value: float) -> str:
    """A ratio as ``1.52x``; one that is not a finite number as "not measured".

    Example:
        >>> ratio_text(1.519), ratio_text(float("nan"))
        ('1.52x', 'not measured')
    """
    return f"{value:.2f}x" if math.isfinite(value) else "not measured"


def fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.3g}"
    return f"{value:.2g}"


class Axes:
    """A plot area mapping data to pixels, linear or log on x."""

    def __init__(
        self, xs: Sequence[float], ys: Sequence[float], *, xlog: bool = False, y0: bool = True
    ) -> None:
        self.xlog = xlog
        tx = [math.log10(x) for x in xs if x > 0] if xlog else list(xs)
        self.x_low, self.x_high = (min(tx), max(tx)) if tx else (0.0, 1.0)
        if self.x_high == self.x_low:
            self.x_low, self.x_high = self.x_low - 0.5, self.x_high + 0.5
        self.y_low = 0.0 if y0 else min(ys, default=0.0)
        self.y_high = max(ys, default=1.0) * 1.08 or 1.0
        if self.y_high <= self.y_low:
            self.y_high = self.y_low + 1.0
        self.w = WIDTH - MARGIN["left"] - MARGIN["right"]
        self.h = HEIGHT - MARGIN["top"] - MARGIN["bottom"]

    def x(self, value: float) -> float:
        v = math.log10(value) if self.xlog else value
        return MARGIN["left"] + (v - self.x_low) / (self.x_high - self.x_low) * self.w

    def y(self, value: float) -> float:
        return MARGIN["top"] + self.h - (value - self.y_low) / (self.y_high - self.y_low) * self.h

    def frame(self, xlabel: str, ylabel: str, xticks: Sequence[float] | None = None) -> str:
        parts = [
            f'<line x1="{MARGIN["left"]}" y1="{self.y(self.y_low):.1f}" '
            f'x2="{WIDTH - MARGIN["right"]}" y2="{self.y(self.y_low):.1f}" class="axis"/>',
            f'<line x1="{MARGIN["left"]}" y1="{MARGIN["top"]}" x2="{MARGIN["left"]}" '
            f'y2="{self.y(self.y_low):.1f}" class="axis"/>',
        ]
        for tick in ticks(self.y_low, self.y_high):
            y = self.y(tick)
            if MARGIN["top"] - 1 <= y <= MARGIN["top"] + self.h + 1:
                parts.append(
                    f'<line x1="{MARGIN["left"]}" y1="{y:.1f}" x2="{WIDTH - MARGIN["right"]}" '
                    f'y2="{y:.1f}" class="grid"/><text x="{MARGIN["left"] - 6}" y="{y + 4:.1f}" '
                    f'class="tick" text-anchor="end">{fmt(tick)}</text>'
                )
        for tick in xticks or []:
            x = self.x(tick)
            parts.append(
                f'<text x="{x:.1f}" y="{MARGIN["top"] + self.h + 16}" class="tick" '
                f'text-anchor="middle">{fmt(tick)}</text>'
            )
        parts.append(
            f'<text x="{MARGIN["left"] + self.w / 2:.0f}" y="{HEIGHT - 8}" class="label" '
            f'text-anchor="middle">{esc(xlabel)}</text>'
            f'<text x="14" y="{MARGIN["top"] + self.h / 2:.0f}" class="label" '
            f'text-anchor="middle" transform="rotate(-90 14 {MARGIN["top"] + self.h / 2:.0f})">'
            f"{esc(ylabel)}</text>"
        )
        return "".join(parts)


def svg(title: str, body: str, legend: Sequence[tuple[str, str]] = ()) -> str:
    keys = "".join(
        f'<rect x="{MARGIN["left"] + 10 + 130 * i}" y="8" width="10" height="10" fill="{colour}"/>'
        f'<text x="{MARGIN["left"] + 24 + 130 * i}" y="17" class="tick">{esc(name)}</text>'
        for i, (name, colour) in enumerate(legend)
    )
    return (
        f'<figure><figcaption>{esc(title)}</figcaption><svg class="plot" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{esc(title)}">{body}{keys}</svg></figure>'
    )


def polyline(axes: Axes, points: Sequence[tuple[float, float]], colour: str) -> str:
    path = " ".join(f"{axes.x(x):.1f},{axes.y(y):.1f}" for x, y in points)
    dots = "".join(
        f'<circle cx="{axes.x(x):.1f}" cy="{axes.y(y):.1f}" r="3.5" fill="{colour}"/>'
        for x, y in points
    )
    return f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>{dots}'


def bars(
    labels: Sequence[str],
    stacks: Sequence[Sequence[float]],
    names: Sequence[str],
    title: str,
    ylabel: str,
) -> str:
    totals = [sum(s) for s in stacks]
    axes = Axes([0, len(labels)], totals)
    slot = axes.w / max(len(labels), 1)
    body = [axes.frame("", ylabel)]
    for i, (label, stack) in enumerate(zip(labels, stacks, strict=True)):
        x = MARGIN["left"] + slot * i + slot * 0.2
        base = 0.0
        for j, value in enumerate(stack):
            top, bottom = axes.y(base + value), axes.y(base)
            body.append(
                f'<rect x="{x:.1f}" y="{top:.1f}" width="{slot * 0.6:.1f}" '
                f'height="{max(bottom - top, 0):.1f}" fill="{COLOURS[j % len(COLOURS)]}">'
                f"<title>{esc(names[j] if j < len(names) else '')}: {fmt(value)}</title></rect>"
            )
            base += value
        body.append(
            f'<text x="{x + slot * 0.3:.1f}" y="{MARGIN["top"] + axes.h + 16}" class="tick" '
            f'text-anchor="middle">{esc(label)}</text>'
            f'<text x="{x + slot * 0.3:.1f}" y="{axes.y(base) - 5:.1f}" class="tick" '
            f'text-anchor="middle">{fmt(base)}</text>'
        )
    legend = [(n, COLOURS[j % len(COLOURS)]) for j, n in enumerate(names)] if len(names) > 1 else []
    return svg(title, "".join(body), legend)


# --- the plots ----------------------------------------------------------------------------
