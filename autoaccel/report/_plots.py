"""The report's plots, each from the run record: baseline vs. tuned with each confirmation
pair, throughput against the batch, a parallel-coordinate view of the measured setups, the
step time split, the trial history, Optuna's parameter importances, the LR range test's
curve and the tuned LR schedule. Each returns "" when the record holds nothing to draw."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from autoaccel.report._svg import (
    COLOURS,
    HEIGHT,
    MARGIN,
    OUTCOME_COLOURS,
    WIDTH,
    Axes,
    bars,
    esc,
    fmt,
    polyline,
    ratio_text,
    svg,
    ticks,
)

__all__ = [
    "batch_plot",
    "history_plot",
    "importance_plot",
    "lr_plots",
    "parallel_plot",
    "schedule_plot",
    "speedup_plot",
    "split_plot",
]


def speedup_plot(record: dict[str, Any]) -> str:
    base = record["baseline"]["samples_per_s"]
    best = record["best"]["samples_per_s"]
    pairs = record.get("speedup_pairs", {})
    # time-to-loss: the throughput stage's pick, when the schedule study wrote another setup
    written = record["speedup"].get("of_written", True)
    plot = bars(
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
    axes = Axes([p[0] for p in points], [1.0, *ratios], y0=True)
    body = axes.frame(
        "confirmation pair (baseline, then tuned, measured in turn)",
        "tuned / baseline",
        [p[0] for p in points],
    )
    body += (
        f'<line x1="{MARGIN["left"]}" y1="{axes.y(1):.1f}" x2="{WIDTH - MARGIN["right"]}" '
        f'y2="{axes.y(1):.1f}" class="one"/>'
    )
    body += polyline(axes, points, COLOURS[2])
    del pairs
    whose = "" if written else " of the throughput pick (not written)"
    median = ratio_text(record["speedup"]["median"])
    return plot + svg(f"Paired speedup{whose}: median {median}", body)


def batch_plot(record: dict[str, Any]) -> str:
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
    axes = Axes(xs, ys, xlog=True)
    body = axes.frame(
        "batch per step, all processes (log scale)", "samples/s (best trial)", sorted(set(xs))
    )
    legend = []
    for i, (name, line) in enumerate(sorted(series.items())):
        colour = COLOURS[i % len(COLOURS)]
        body += polyline(axes, sorted(line.items()), colour)
        legend.append((name, colour))
    return svg("Throughput vs. batch, per precision and process count", body, legend)


def _order(values: Sequence[Any]) -> list[Any]:
    """A knob's values in axis order: numbers by size, the rest as text."""
    unique = list(dict.fromkeys(values))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in unique)
    return sorted(unique) if numeric else sorted(unique, key=str)


def parallel_plot(record: dict[str, Any]) -> str:
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
    axes = Axes([0, len(knobs)], [0.0, *ratios], y0=True)
    step = (axes.w - 30) / len(knobs)  # room on the right for the ratio's ticks
    xs = [MARGIN["left"] + step * i for i in range(len(knobs) + 1)]
    body = []
    levels = {k: _order([t["params"].get(k) for t in trials]) for k in knobs}
    for n, (x, knob) in enumerate(zip(xs, knobs, strict=False)):
        body.append(f'<line x1="{x:.1f}" y1="{MARGIN["top"]}" x2="{x:.1f}" '
                    f'y2="{MARGIN["top"] + axes.h}" class="axis"/>'
                    f'<text x="{x:.1f}" y="{HEIGHT - 26 + 14 * (n % 2)}" class="label" '
                    f'text-anchor="middle">{esc(knob)}</text>')  # fmt: skip
        for i, value in enumerate(levels[knob]):
            y = MARGIN["top"] + axes.h * (1 - (i + 0.5) / len(levels[knob]))
            body.append(f'<text x="{x + 3:.1f}" y="{y - 3:.1f}" class="tick">{esc(value)}</text>')
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
    for tick in ticks(0.0, max(ratios)):
        body.append(f'<text x="{last + 3:.1f}" y="{axes.y(tick) + 4:.1f}" class="tick">'
                    f"{tick:.2g}x</text>")  # fmt: skip
    legend = [("faster than yours", COLOURS[0]), ("slower", "#bbbbbb"), ("written", "#d62728")]
    return svg("Knobs of each measured setup, and its samples/s", "".join(body), legend)


def split_plot(record: dict[str, Any]) -> str:
    stacks = []
    for key in ("baseline", "best"):
        m = record[key]
        stacks.append([1000 * m["data_wait_s"], 1000 * m["compute_s"]])
    return bars(
        ["baseline", "tuned"],
        stacks,
        ["data wait", "compute"],
        "Step time: data wait vs. compute (ms per step)",
        "ms per step",
    )


def history_plot(record: dict[str, Any]) -> str:
    trials = record["trials"]
    if not trials:
        return ""
    xs = [float(t["number"]) for t in trials]
    ys = [t["samples_per_s"] for t in trials]
    axes = Axes(xs, ys)
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
            f'fill="{colour}"><title>trial {t["number"]} ({esc(t["source"])}): '
            f"{esc(t['outcome'])}, {fmt(t['samples_per_s'])} samples/s</title></circle>"
        )
    legend = [
        ("ok", OUTCOME_COLOURS["ok"]),
        ("stopped early", "#aaaaaa"),
        ("failed", "#ff7f0e"),
        ("best so far", "#2ca02c"),
    ]
    return svg("Trial history", body, legend)


def importance_plot(record: dict[str, Any]) -> str:
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
            f'text-anchor="end">{esc(name)}</text>'
            f'<rect x="160" y="{y + row * 0.15:.1f}" width="{width * found[name] / top:.1f}" '
            f'height="{row * 0.7:.1f}" fill="{COLOURS[0]}"/>'
            f'<text x="{165 + width * found[name] / top:.1f}" y="{y + row * 0.6:.1f}" '
            f'class="tick">{found[name]:.2f}</text>'
        )
    return svg("Parameter importances (Optuna, fANOVA)", body)


def lr_plots(record: dict[str, Any]) -> str:
    out = ""
    curve = record.get("lr_range_test")
    if curve and curve.get("lrs"):
        points = [
            (lr, loss)
            for lr, loss in zip(curve["lrs"], curve["losses"], strict=False)
            if math.isfinite(loss) and lr > 0
        ]
        if points:
            axes = Axes([p[0] for p in points], [p[1] for p in points], xlog=True, y0=False)
            decades = sorted(
                {10.0**e for e in range(math.floor(axes.x_low), math.ceil(axes.x_high) + 1)}
            )
            body = axes.frame(
                "learning rate (log scale)",
                "smoothed loss",
                [d for d in decades if axes.x_low <= math.log10(d) <= axes.x_high],
            )
            body += polyline(axes, points, COLOURS[0]).replace('r="3.5"', 'r="1.5"')
            if curve.get("suggestion"):
                x = axes.x(curve["suggestion"])
                bottom = MARGIN["top"] + axes.h
                body += (
                    f'<line x1="{x:.1f}" y1="{MARGIN["top"]}" x2="{x:.1f}" y2="{bottom}" '
                    'class="one"/>'
                )
            suggested = curve.get("suggestion")
            said = f"suggested lr {suggested:.3g}" if suggested else "no suggestion"
            out += svg(f"LR range test ({said})", body)
    config = record["config"]
    if config.get("lr") and (config.get("warmup_steps") or config.get("schedule") != "constant"):
        out += schedule_plot(config)
    return out


def schedule_plot(config: dict[str, Any]) -> str:
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
    axes = Axes([p[0] for p in points], [p[1] for p in points])
    body = axes.frame("optimizer step", "learning rate", ticks(0, total))
    body += polyline(axes, points, COLOURS[3]).replace('r="3.5"', 'r="1"')
    return svg(f"Tuned LR schedule ({warmup} warm-up steps, then {shape})", body)
