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

from collections.abc import Sequence
from typing import Any

from autoaccel.report._plots import (
    batch_plot,
    history_plot,
    importance_plot,
    lr_plots,
    parallel_plot,
    speedup_plot,
    split_plot,
)
from autoaccel.report._svg import esc, fmt, ratio_text

__all__ = ["render_report"]


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
    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
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
            f"The throughput stage's pick ran <b>{ratio_text(speedup['median'])}</b> your "
            f"samples/s (median of {pairs} interleaved pairs); it was not written: the "
            "schedule study wrote the setup that reached your held-out losses soonest "
            "(time to loss below)."
        )
    else:
        line = (
            f"Tuned vs. baseline: <b>{ratio_text(speedup['median'])}</b> samples/s (median of "
            f"{pairs} interleaved pairs; min {ratio_text(speedup['min'])}, max "
            f"{ratio_text(speedup['max'])}). {fmt(before)} &rarr; {fmt(after)} samples/s."
        )
    if fastest is not None:
        knobs = ", ".join(f"{k} {v}" for k, v in fastest["params"].items())
        line += (
            f'<br><span class="fastest">The fastest setup measured (trial {fastest["trial"]}: '
            f"{esc(knobs)}) ran <b>{ratio_text(fastest['ratio'])}</b> your samples/s in one "
            f"trial; it was not written: {esc(fastest['why'])}</span>"
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
        return [t["number"], t.get("source") or "", t["outcome"], fmt(rate), ratio, *values,
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
            f"<details{' open' if i == 0 else ''}><summary>sorted by {esc(name)}</summary>"
            f"{_table([row(t) for t in ordered], header)}</details>"
        )
    return "".join(folds)


def _page(title: str, sections: Sequence[str]) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>autoaccel report: {esc(title)}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def _lr_find_page(record: dict[str, Any]) -> str:
    """The page for an ``autoaccel lr-find`` record (``autoaccel.record.lr_find_record``)."""
    curve = record.get("lr_range_test") or {}
    suggestion = curve.get("suggestion")
    said = (
        f"suggested lr <b>{suggestion:.3g}</b> ({esc(curve.get('confidence'))} confidence)"
        if suggestion
        else "no suggestion"
    )
    facts = [
        ("why", curve.get("reason") or ""),
        ("batch size", record.get("batch_size")),
        ("config", record.get("config_path") or "the script's own settings"),
        ("steps", len(record.get("raw_losses") or [])),
    ]
    context = f"{esc(record.get('command') or '')} &middot; {esc(record.get('created_at') or '')}"
    plot = lr_plots({**record, "config": {}})
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
            speedup_plot(record),
            batch_plot(record),
            parallel_plot(record),
            split_plot(record),
            history_plot(record),
            importance_plot(record),
            lr_plots(record),
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
    notes = "".join(f"<li>{esc(n)}</li>" for n in record.get("notes", [])) or "<li>none</li>"
    diagnosis = record["diagnosis"]
    headline = _headline(record)
    context = (
        f"{esc(record.get('command') or '')} &middot; {esc(record.get('created_at') or '')} "
        f"&middot; {esc(search['trials_measured'])} trials of a "
        f"{esc(search['grid_size'])}-configuration "
        f"grid &middot; stopped: {esc(search['stop_reason'])}"
    )
    sections = [
        f'<h1>autoaccel report</h1><p class="headline">{headline}</p>',
        f'<p class="note">{context}</p>',
        f'<h2>Plots</h2><div class="plots">{plots}</div>',
        f"<h2>What changed, and why</h2>{_table(changed, ('recommendation', 'evidence'))}",
        f"<h2>Every trial</h2>{_trial_tables(record)}",
        f"<h2>The tuned config</h2>{_table(knobs, ('knob', 'value'))}",
        f"<h2>Hardware</h2>{_table(machine)}",
        f"<h2>Diagnosis</h2><p>{esc(diagnosis['bound'])}-bound: "
        f"{esc('; '.join(diagnosis['reasons']))}</p>",
        f"<h2>Notes</h2><ul>{notes}</ul>",
    ]
    return _page(search["study_name"], sections)
