"""``autoaccel report``: a run record (``summary.json``) as one self-contained HTML page.

The page needs no network and no JavaScript. Its plots are inline SVG, drawn here:
- baseline vs. tuned, with each confirmation pair;
- throughput against batch size, one line per precision;
- the step time split into data wait and compute, before and after;
- the trial history, with the best so far;
- Optuna's parameter importances;
- the LR range test's curve and the tuned LR schedule, when there are any.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["render_report"]

WIDTH, HEIGHT = 560, 300
MARGIN = {"left": 70, "right": 20, "top": 30, "bottom": 45}
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"]
OUTCOME_COLOURS = {"ok": "#1f77b4", "pruned": "#aaaaaa", "oom": "#d62728"}


# --- SVG helpers ------------------------------------------------------------------------


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
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


def _ratio(value: float) -> str:
    """A ratio as ``1.52x``; one that is not a finite number as "not measured".

    Example:
        >>> _ratio(1.519), _ratio(float("nan"))
        ('1.52x', 'not measured')
    """
    return f"{value:.2f}x" if math.isfinite(value) else "not measured"


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.3g}"
    return f"{value:.2g}"


class _Axes:
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
        for tick in _ticks(self.y_low, self.y_high):
            y = self.y(tick)
            if MARGIN["top"] - 1 <= y <= MARGIN["top"] + self.h + 1:
                parts.append(
                    f'<line x1="{MARGIN["left"]}" y1="{y:.1f}" x2="{WIDTH - MARGIN["right"]}" '
                    f'y2="{y:.1f}" class="grid"/><text x="{MARGIN["left"] - 6}" y="{y + 4:.1f}" '
                    f'class="tick" text-anchor="end">{_fmt(tick)}</text>'
                )
        for tick in xticks or []:
            x = self.x(tick)
            parts.append(
                f'<text x="{x:.1f}" y="{MARGIN["top"] + self.h + 16}" class="tick" '
                f'text-anchor="middle">{_fmt(tick)}</text>'
            )
        parts.append(
            f'<text x="{MARGIN["left"] + self.w / 2:.0f}" y="{HEIGHT - 8}" class="label" '
            f'text-anchor="middle">{_esc(xlabel)}</text>'
            f'<text x="14" y="{MARGIN["top"] + self.h / 2:.0f}" class="label" '
            f'text-anchor="middle" transform="rotate(-90 14 {MARGIN["top"] + self.h / 2:.0f})">'
            f"{_esc(ylabel)}</text>"
        )
        return "".join(parts)


def _svg(title: str, body: str, legend: Sequence[tuple[str, str]] = ()) -> str:
    keys = "".join(
        f'<rect x="{MARGIN["left"] + 10 + 130 * i}" y="8" width="10" height="10" fill="{colour}"/>'
        f'<text x="{MARGIN["left"] + 24 + 130 * i}" y="17" class="tick">{_esc(name)}</text>'
        for i, (name, colour) in enumerate(legend)
    )
    return (
        f'<figure><figcaption>{_esc(title)}</figcaption><svg class="plot" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{_esc(title)}">{body}{keys}</svg></figure>'
    )


def _polyline(axes: _Axes, points: Sequence[tuple[float, float]], colour: str) -> str:
    path = " ".join(f"{axes.x(x):.1f},{axes.y(y):.1f}" for x, y in points)
    dots = "".join(
        f'<circle cx="{axes.x(x):.1f}" cy="{axes.y(y):.1f}" r="3.5" fill="{colour}"/>'
        for x, y in points
    )
    return f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>{dots}'


def _bars(
    labels: Sequence[str],
    stacks: Sequence[Sequence[float]],
    names: Sequence[str],
    title: str,
    ylabel: str,
) -> str:
    totals = [sum(s) for s in stacks]
    axes = _Axes([0, len(labels)], totals)
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
                f"<title>{_esc(names[j] if j < len(names) else '')}: {_fmt(value)}</title></rect>"
            )
            base += value
        body.append(
            f'<text x="{x + slot * 0.3:.1f}" y="{MARGIN["top"] + axes.h + 16}" class="tick" '
            f'text-anchor="middle">{_esc(label)}</text>'
            f'<text x="{x + slot * 0.3:.1f}" y="{axes.y(base) - 5:.1f}" class="tick" '
            f'text-anchor="middle">{_fmt(base)}</text>'
        )
    legend = [(n, COLOURS[j % len(COLOURS)]) for j, n in enumerate(names)] if len(names) > 1 else []
    return _svg(title, "".join(body), legend)


# --- the plots ----------------------------------------------------------------------------


def _speedup_plot(record: dict[str, Any]) -> str:
    base = record["baseline"]["samples_per_s"]
    best = record["best"]["samples_per_s"]
    pairs = record.get("speedup_pairs", {})
    plot = _bars(
        ["baseline", "tuned"],
        [[base], [best]],
        ["samples/s"],
        "Baseline vs. tuned (samples/s)",
        "samples/s",
    )
    ratios = record["speedup"]["ratios"]
    if not ratios:
        return plot
    points = list(enumerate(ratios, start=1))
    axes = _Axes([p[0] for p in points], [1.0, *ratios], y0=True)
    body = axes.frame(
        "confirmation pair (baseline, then tuned, measured in turn)",
        "tuned / baseline",
        [p[0] for p in points],
    )
    body += (
        f'<line x1="{MARGIN["left"]}" y1="{axes.y(1):.1f}" x2="{WIDTH - MARGIN["right"]}" '
        f'y2="{axes.y(1):.1f}" class="one"/>'
    )
    body += _polyline(axes, points, COLOURS[2])
    del pairs
    return plot + _svg(f"Paired speedup: median {_ratio(record['speedup']['median'])}", body)


def _batch_plot(record: dict[str, Any]) -> str:
    series: dict[str, dict[float, float]] = {}
    for trial in record["trials"]:
        params = trial["params"]
        if trial["outcome"] != "ok" or "batch_size" not in params:
            continue
        line = series.setdefault(str(params.get("precision", "as the script")), {})
        batch = float(params["batch_size"])
        line[batch] = max(line.get(batch, 0.0), trial["samples_per_s"])
    if not series:
        return ""
    xs = [b for line in series.values() for b in line]
    ys = [v for line in series.values() for v in line.values()]
    axes = _Axes(xs, ys, xlog=True)
    body = axes.frame("batch size (log scale)", "samples/s (best trial)", sorted(set(xs)))
    legend = []
    for i, (name, line) in enumerate(sorted(series.items())):
        colour = COLOURS[i % len(COLOURS)]
        body += _polyline(axes, sorted(line.items()), colour)
        legend.append((name, colour))
    return _svg("Throughput vs. batch size, per precision", body, legend)


def _split_plot(record: dict[str, Any]) -> str:
    stacks = []
    for key in ("baseline", "best"):
        m = record[key]
        stacks.append([1000 * m["data_wait_s"], 1000 * m["compute_s"]])
    return _bars(
        ["baseline", "tuned"],
        stacks,
        ["data wait", "compute"],
        "Step time: data wait vs. compute (ms per step)",
        "ms per step",
    )


def _history_plot(record: dict[str, Any]) -> str:
    trials = record["trials"]
    if not trials:
        return ""
    xs = [float(t["number"]) for t in trials]
    ys = [t["samples_per_s"] for t in trials]
    axes = _Axes(xs, ys)
    body = axes.frame("trial", "samples/s", sorted(set(xs))[:: max(1, len(xs) // 10)])
    best, running = 0.0, []
    for t in sorted(trials, key=lambda t: t["number"]):
        if t["outcome"] == "ok":
            best = max(best, t["samples_per_s"])
        running.append((float(t["number"]), best))
    body += (
        '<polyline points="'
        + " ".join(f"{axes.x(x):.1f},{axes.y(y):.1f}" for x, y in running)
        + '" fill="none" stroke="#2ca02c" stroke-width="2" stroke-dasharray="5,3"/>'
    )
    for t in trials:
        colour = OUTCOME_COLOURS.get(t["outcome"], "#ff7f0e")
        body += (
            f'<circle cx="{axes.x(t["number"]):.1f}" cy="{axes.y(t["samples_per_s"]):.1f}" r="4" '
            f'fill="{colour}"><title>trial {t["number"]} ({_esc(t["source"])}): '
            f"{_esc(t['outcome'])}, {_fmt(t['samples_per_s'])} samples/s</title></circle>"
        )
    legend = [
        ("ok", OUTCOME_COLOURS["ok"]),
        ("stopped early", "#aaaaaa"),
        ("failed", "#ff7f0e"),
        ("best so far", "#2ca02c"),
    ]
    return _svg("Trial history", body, legend)


def _importance_plot(record: dict[str, Any]) -> str:
    found = record.get("importances") or {}
    if not found:
        return ""
    names = list(found)
    row = (HEIGHT - MARGIN["top"] - 20) / max(len(names), 1)
    top = max(found.values()) or 1.0
    width = WIDTH - 200
    body = ""
    for i, name in enumerate(names):
        y = MARGIN["top"] + i * row
        body += (
            f'<text x="150" y="{y + row * 0.6:.1f}" class="tick" '
            f'text-anchor="end">{_esc(name)}</text>'
            f'<rect x="160" y="{y + row * 0.15:.1f}" width="{width * found[name] / top:.1f}" '
            f'height="{row * 0.7:.1f}" fill="{COLOURS[0]}"/>'
            f'<text x="{165 + width * found[name] / top:.1f}" y="{y + row * 0.6:.1f}" '
            f'class="tick">{found[name]:.2f}</text>'
        )
    return _svg("Parameter importances (Optuna, fANOVA)", body)


def _lr_plots(record: dict[str, Any]) -> str:
    out = ""
    curve = record.get("lr_range_test")
    if curve and curve.get("lrs"):
        points = [
            (lr, loss)
            for lr, loss in zip(curve["lrs"], curve["losses"], strict=False)
            if math.isfinite(loss) and lr > 0
        ]
        if points:
            axes = _Axes([p[0] for p in points], [p[1] for p in points], xlog=True, y0=False)
            decades = sorted(
                {10.0**e for e in range(math.floor(axes.x_low), math.ceil(axes.x_high) + 1)}
            )
            body = axes.frame(
                "learning rate (log scale)",
                "smoothed loss",
                [d for d in decades if axes.x_low <= math.log10(d) <= axes.x_high],
            )
            body += _polyline(axes, points, COLOURS[0]).replace('r="3.5"', 'r="1.5"')
            if curve.get("suggestion"):
                x = axes.x(curve["suggestion"])
                bottom = MARGIN["top"] + axes.h
                body += (
                    f'<line x1="{x:.1f}" y1="{MARGIN["top"]}" x2="{x:.1f}" y2="{bottom}" '
                    'class="one"/>'
                )
            suggested = curve.get("suggestion")
            said = f"suggested lr {suggested:.3g}" if suggested else "no suggestion"
            out += _svg(f"LR range test ({said})", body)
    config = record["config"]
    if config.get("lr") and (config.get("warmup_steps") or config.get("schedule") != "constant"):
        out += _schedule_plot(config)
    return out


def _schedule_plot(config: dict[str, Any]) -> str:
    warmup, span = int(config.get("warmup_steps") or 0), int(config.get("schedule_steps") or 0)
    total = warmup + span if span else max(warmup * 2, 10)
    peak, shape = float(config["lr"]), config.get("schedule", "constant")
    points = []
    for step in range(0, total + 1, max(1, total // 100)):
        if step < warmup:
            lr = peak * (step + 1) / warmup
        elif shape == "cosine" and span:
            lr = peak * 0.5 * (1 + math.cos(math.pi * min(step - warmup, span) / span))
        elif shape in ("linear", "one-cycle") and span:
            lr = peak * max(0.0, 1 - (step - warmup) / span)
        else:
            lr = peak
        points.append((float(step), lr))
    axes = _Axes([p[0] for p in points], [p[1] for p in points])
    body = axes.frame("optimizer step", "learning rate", _ticks(0, total))
    body += _polyline(axes, points, COLOURS[3]).replace('r="3.5"', 'r="1"')
    return _svg(f"Tuned LR schedule ({warmup} warm-up steps, then {shape})", body)


# --- the page -----------------------------------------------------------------------------

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; } figure { margin: 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg.plot { background: #fff; border: 1px solid #e5e5e5; }
.axis { stroke: #333; } .grid { stroke: #eee; } .one { stroke: #999; stroke-dasharray: 4,3; }
.tick { font-size: 11px; fill: #444; } .label { font-size: 12px; fill: #222; }
.headline { font-size: 1.3em; } .note { color: #555; }
"""


def _table(rows: Sequence[tuple[Any, Any]], header: tuple[str, str] | None = None) -> str:
    head = f"<tr><th>{_esc(header[0])}</th><th>{_esc(header[1])}</th></tr>" if header else ""
    body = "".join(f"<tr><td>{_esc(a)}</td><td>{_esc(b)}</td></tr>" for a, b in rows)
    return f"<table>{head}{body}</table>"


def render_report(record: dict[str, Any]) -> str:
    """The HTML page for one run record (``autoaccel.record.run_record``)."""
    speedup = record["speedup"]
    hardware = record.get("hardware", {})
    software = hardware.get("software", {})
    config = record["config"]
    changed = [
        (r["text"], ("measured: " if r["measured"] else "advice, not measured: ") + r["evidence"])
        for r in record["recommendations"]
    ]
    plots = "".join(
        p
        for p in (
            _speedup_plot(record),
            _batch_plot(record),
            _split_plot(record),
            _history_plot(record),
            _importance_plot(record),
            _lr_plots(record),
        )
        if p
    )
    knobs = [
        (k, "(script's own)" if v is None else v) for k, v in config.items() if k != "provenance"
    ]
    search = record["search"]
    machine = [
        ("machine", hardware.get("describe", "")),
        ("fingerprint", hardware.get("fingerprint", "")),
        ("torch", software.get("torch", "")),
        ("CUDA", software.get("cuda") or "none"),
    ]
    notes = "".join(f"<li>{_esc(n)}</li>" for n in record.get("notes", [])) or "<li>none</li>"
    diagnosis = record["diagnosis"]
    headline = (
        f"Tuned vs. baseline: <b>{_ratio(speedup['median'])}</b> samples/s (median of "
        f"{len(speedup['ratios'])} interleaved pairs; min {_ratio(speedup['min'])}, max "
        f"{_ratio(speedup['max'])}). {_fmt(record['baseline']['samples_per_s'])} &rarr; "
        f"{_fmt(record['best']['samples_per_s'])} samples/s."
    )
    context = (
        f"{_esc(record.get('command') or '')} &middot; {_esc(record.get('created_at') or '')} "
        f"&middot; {_esc(search['trials_measured'])} trials of a "
        f"{_esc(search['grid_size'])}-configuration "
        f"grid &middot; stopped: {_esc(search['stop_reason'])}"
    )
    sections = [
        f'<h1>autoaccel report</h1><p class="headline">{headline}</p>',
        f'<p class="note">{context}</p>',
        f'<h2>Plots</h2><div class="plots">{plots}</div>',
        f"<h2>What changed, and why</h2>{_table(changed, ('recommendation', 'evidence'))}",
        f"<h2>The tuned config</h2>{_table(knobs, ('knob', 'value'))}",
        f"<h2>Hardware</h2>{_table(machine)}",
        f"<h2>Diagnosis</h2><p>{_esc(diagnosis['bound'])}-bound: "
        f"{_esc('; '.join(diagnosis['reasons']))}</p>",
        f"<h2>Notes</h2><ul>{notes}</ul>",
    ]
    title = _esc(search["study_name"])
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>autoaccel report: {title}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
