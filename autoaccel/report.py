"""``autoaccel report``: a run record (``summary.json``) as one self-contained HTML page.

The page needs no network and no JavaScript. Its plots are inline SVG, drawn here:
- baseline vs. tuned, with each confirmation pair;
- throughput against the batch per step, one line per precision and process count;
- a parallel-coordinate view: each measured setup's knobs and its samples/s;
- the step time split into data wait and compute, before and after;
- the trial history, with the best so far;
- Optuna's parameter importances;
- the LR range test's curve and the tuned LR schedule, when there are any.

Above them, the headline says what was written and its paired ratio, and the fastest setup
measured when that is not the one written, with why. Below them, every trial in a table,
once per sort key (sorted here: folds, not scripts), and "what changed", never empty.
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
    # time-to-loss: the throughput stage's pick, when the schedule study wrote another setup
    written = record["speedup"].get("of_written", True)
    plot = _bars(
        ["baseline", "tuned" if written else "not written"],
        [[base], [best]],
        ["samples/s"],
        f"Baseline vs. {'tuned' if written else 'the throughput pick, not written'} (samples/s)",
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
    whose = "" if written else " of the throughput pick (not written)"
    median = _ratio(record["speedup"]["median"])
    return plot + _svg(f"Paired speedup{whose}: median {median}", body)


def _batch_plot(record: dict[str, Any]) -> str:
    """Throughput against the batch all processes train per step, one line per precision
    and process count (a 2-process trial at batch 64 per process is a batch of 128)."""
    series: dict[str, dict[float, float]] = {}
    for trial in record["trials"]:
        params = trial["params"]
        if trial["outcome"] != "ok" or "batch_size" not in params:
            continue
        processes = int(params.get("processes") or 1)
        name = f"{params.get('precision', 'as the script')}, {processes} proc."
        line = series.setdefault(name, {})
        batch = float(params["batch_size"]) * processes
        line[batch] = max(line.get(batch, 0.0), trial["samples_per_s"])
    if not series:
        return ""
    xs = [b for line in series.values() for b in line]
    ys = [v for line in series.values() for v in line.values()]
    axes = _Axes(xs, ys, xlog=True)
    body = axes.frame(
        "batch per step, all processes (log scale)", "samples/s (best trial)", sorted(set(xs))
    )
    legend = []
    for i, (name, line) in enumerate(sorted(series.items())):
        colour = COLOURS[i % len(COLOURS)]
        body += _polyline(axes, sorted(line.items()), colour)
        legend.append((name, colour))
    return _svg("Throughput vs. batch, per precision and process count", body, legend)


def _order(values: Sequence[Any]) -> list[Any]:
    """A knob's values in axis order: numbers by size, the rest as text."""
    unique = list(dict.fromkeys(values))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in unique)
    return sorted(unique) if numeric else sorted(unique, key=str)


def _parallel_plot(record: dict[str, Any]) -> str:
    """Each measured setup as a line across one axis per knob, ending at its samples/s
    against yours: the faster ones blue, the slower grey, the one written red."""
    trials = [t for t in record["trials"] if t["outcome"] == "ok" and t["params"]]
    knobs = [
        k
        for k in dict.fromkeys(k for t in trials for k in t["params"])
        if len({str(t["params"].get(k)) for t in trials}) > 1
    ]
    base = record["baseline"]["samples_per_s"]
    if len(trials) < 2 or not knobs or base <= 0:
        return ""
    ratios = [t["samples_per_s"] / base for t in trials]
    axes = _Axes([0, len(knobs)], [0.0, *ratios], y0=True)
    step = (axes.w - 30) / len(knobs)  # room on the right for the ratio's ticks
    xs = [MARGIN["left"] + step * i for i in range(len(knobs) + 1)]
    body = []
    levels = {k: _order([t["params"].get(k) for t in trials]) for k in knobs}
    for n, (x, knob) in enumerate(zip(xs, knobs, strict=False)):
        body.append(f'<line x1="{x:.1f}" y1="{MARGIN["top"]}" x2="{x:.1f}" '
                    f'y2="{MARGIN["top"] + axes.h}" class="axis"/>'
                    f'<text x="{x:.1f}" y="{HEIGHT - 26 + 14 * (n % 2)}" class="label" '
                    f'text-anchor="middle">{_esc(knob)}</text>')  # fmt: skip
        for i, value in enumerate(levels[knob]):
            y = MARGIN["top"] + axes.h * (1 - (i + 0.5) / len(levels[knob]))
            body.append(f'<text x="{x + 3:.1f}" y="{y - 3:.1f}" class="tick">{_esc(value)}</text>')
    written = record.get("config", {})
    for trial, ratio in sorted(zip(trials, ratios, strict=True), key=lambda tr: tr[1]):
        points = []
        for x, knob in zip(xs, knobs, strict=False):
            level = levels[knob].index(trial["params"].get(knob))
            points.append((x, MARGIN["top"] + axes.h * (1 - (level + 0.5) / len(levels[knob]))))
        points.append((xs[-1], axes.y(ratio)))
        mine = all(written.get(k) == v for k, v in trial["params"].items() if k in written)
        colour = "#d62728" if mine else COLOURS[0] if ratio > 1 else "#bbbbbb"
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                    f'stroke-width="{3 if mine else 1.5}" opacity="0.8"><title>trial '
                    f'{trial["number"]}: {ratio:.2f}x yours</title></polyline>')  # fmt: skip
    last = xs[-1]
    body.append(f'<line x1="{last:.1f}" y1="{MARGIN["top"]}" x2="{last:.1f}" '
                f'y2="{MARGIN["top"] + axes.h}" class="axis"/>'
                f'<text x="{last:.1f}" y="{HEIGHT - 12}" class="label" '
                f'text-anchor="middle">x yours</text>')  # fmt: skip
    for tick in _ticks(0.0, max(ratios)):
        body.append(f'<text x="{last + 3:.1f}" y="{axes.y(tick) + 4:.1f}" class="tick">'
                    f"{tick:.2g}x</text>")  # fmt: skip
    legend = [("faster than yours", COLOURS[0]), ("slower", "#bbbbbb"), ("written", "#d62728")]
    return _svg("Knobs of each measured setup, and its samples/s", "".join(body), legend)


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
.headline { font-size: 1.3em; } .note { color: #555; } .fastest { font-size: .8em; }
summary { cursor: pointer; margin: .3em 0; }
"""


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    head = "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _faster_measured(record: dict[str, Any]) -> bool:
    """Whether any trial measured a setup faster than the baseline."""
    base = record["baseline"]["samples_per_s"]
    fastest = record.get("fastest")
    if fastest is not None:
        return bool(fastest["ratio"] > 1.0)
    return any(t["outcome"] == "ok" and t["samples_per_s"] > base for t in record["trials"])


def _unwritten_faster(record: dict[str, Any]) -> dict[str, Any] | None:
    """The fastest setup measured, when it beat yours and was not the one written."""
    fastest: dict[str, Any] | None = record.get("fastest")
    if fastest is not None and not fastest["written"] and fastest["ratio"] > 1.0:
        return fastest
    return None


def _headline(record: dict[str, Any]) -> str:
    """What was written and its paired ratio; the fastest setup measured, when it is not
    the one written, and why; "no setup measured here was faster" only when true."""
    speedup, fastest = record["speedup"], _unwritten_faster(record)
    pairs = len(speedup["ratios"])
    before, after = record["baseline"]["samples_per_s"], record["best"]["samples_per_s"]
    if speedup.get("yours_kept") or not pairs:
        line = "Your setup was kept: <b>1.00x</b>; nothing else was written to confirm."
    elif speedup.get("of_written") is False:
        line = (
            f"The throughput stage's pick ran <b>{_ratio(speedup['median'])}</b> your "
            f"samples/s (median of {pairs} interleaved pairs); it was not written: the "
            "schedule study wrote the setup that reached your held-out losses soonest "
            "(time to loss below)."
        )
    else:
        line = (
            f"Tuned vs. baseline: <b>{_ratio(speedup['median'])}</b> samples/s (median of "
            f"{pairs} interleaved pairs; min {_ratio(speedup['min'])}, max "
            f"{_ratio(speedup['max'])}). {_fmt(before)} &rarr; {_fmt(after)} samples/s."
        )
    if fastest is not None:
        knobs = ", ".join(f"{k} {v}" for k, v in fastest["params"].items())
        line += (
            f'<br><span class="fastest">The fastest setup measured (trial {fastest["trial"]}: '
            f"{_esc(knobs)}) ran <b>{_ratio(fastest['ratio'])}</b> your samples/s in one "
            f"trial; it was not written: {_esc(fastest['why'])}</span>"
        )
    elif not _faster_measured(record):
        line += " No setup measured here was faster than yours."
    return line


def _changed(record: dict[str, Any]) -> list[tuple[str, str]]:
    """What changed and the evidence; never empty: "nothing" says why."""
    rows = [
        (r["text"], ("measured: " if r["measured"] else "advice, not measured: ") + r["evidence"])
        for r in record["recommendations"]
    ]
    if rows:
        return rows
    fastest = _unwritten_faster(record)
    if fastest is not None:
        why = f"the faster setups measured were not written: {fastest['why']}"
    elif not _faster_measured(record):
        why = "no setup measured here was faster than yours"
    else:
        why = "the setup written differs from yours in no knob the search tried"
    return [("nothing", why)]


SORT_KEYS = ("samples/s", "trial")


def _trial_tables(record: dict[str, Any]) -> str:
    """Every trial in one table, once per sort key (samples/s first, then trial number and
    each knob), each in a fold of its own: sorted here, so no script is needed."""
    trials = record["trials"]
    if not trials:
        return "<p>No trial was measured.</p>"
    base = record["baseline"]["samples_per_s"] or 0.0
    knobs = list(dict.fromkeys(k for t in trials for k in t["params"]))
    header = ["trial", "source", "outcome", "samples/s", "x yours", *knobs, "message"]

    def row(t: dict[str, Any]) -> list[Any]:
        rate = t["samples_per_s"] or 0.0
        ratio = f"{rate / base:.2f}x" if base and t["outcome"] == "ok" else ""
        values = [t["params"].get(k, "") for k in knobs]
        return [t["number"], t.get("source") or "", t["outcome"], _fmt(rate), ratio, *values,
                (t.get("message") or "")[:120]]  # fmt: skip

    def key(name: str) -> Any:
        if name == "samples/s":
            return lambda t: -(t["samples_per_s"] or 0.0)
        if name == "trial":
            return lambda t: t["number"]
        return lambda t: (str(type(t["params"].get(name))), t["params"].get(name) or 0)

    folds = []
    for i, name in enumerate([*SORT_KEYS, *knobs]):
        try:
            ordered = sorted(trials, key=key(name))
        except TypeError:  # values of mixed kinds: as text
            ordered = sorted(trials, key=lambda t: str(t["params"].get(name)))
        folds.append(
            f"<details{' open' if i == 0 else ''}><summary>sorted by {_esc(name)}</summary>"
            f"{_table([row(t) for t in ordered], header)}</details>"
        )
    return "".join(folds)


def _page(title: str, sections: Sequence[str]) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>autoaccel report: {_esc(title)}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def _lr_find_page(record: dict[str, Any]) -> str:
    """The page for an ``autoaccel lr-find`` record (``autoaccel.record.lr_find_record``)."""
    curve = record.get("lr_range_test") or {}
    suggestion = curve.get("suggestion")
    said = (
        f"suggested lr <b>{suggestion:.3g}</b> ({_esc(curve.get('confidence'))} confidence)"
        if suggestion
        else "no suggestion"
    )
    facts = [
        ("why", curve.get("reason") or ""),
        ("batch size", record.get("batch_size")),
        ("config", record.get("config_path") or "the script's own settings"),
        ("steps", len(record.get("raw_losses") or [])),
    ]
    context = f"{_esc(record.get('command') or '')} &middot; {_esc(record.get('created_at') or '')}"
    plot = _lr_plots({**record, "config": {}})
    return _page(
        f"LR range test of {record.get('script') or 'a script'}",
        [
            f'<h1>autoaccel report: LR range test</h1><p class="headline">{said}</p>',
            f'<p class="note">{context}</p>',
            f'<h2>Plots</h2><div class="plots">{plot}</div>',
            f"<h2>The test</h2>{_table(facts)}",
        ],
    )


def render_report(record: dict[str, Any]) -> str:
    """The HTML page for one run record (``autoaccel.record.run_record``, or
    ``lr_find_record``'s for an ``autoaccel lr-find`` run)."""
    if record.get("kind") == "lr-find":
        return _lr_find_page(record)
    hardware = record.get("hardware", {})
    software = hardware.get("software", {})
    config = record["config"]
    changed = _changed(record)
    plots = "".join(
        p
        for p in (
            _speedup_plot(record),
            _batch_plot(record),
            _parallel_plot(record),
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
    headline = _headline(record)
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
        f"<h2>Every trial</h2>{_trial_tables(record)}",
        f"<h2>The tuned config</h2>{_table(knobs, ('knob', 'value'))}",
        f"<h2>Hardware</h2>{_table(machine)}",
        f"<h2>Diagnosis</h2><p>{_esc(diagnosis['bound'])}-bound: "
        f"{_esc('; '.join(diagnosis['reasons']))}</p>",
        f"<h2>Notes</h2><ul>{notes}</ul>",
    ]
    return _page(search["study_name"], sections)
