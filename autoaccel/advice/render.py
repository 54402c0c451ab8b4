"""Showing an ``Advice``: tables for people, a dict for ``--json`` (pure functions)."""

from __future__ import annotations

import dataclasses
import io
import math
from typing import TYPE_CHECKING, Any

from rich.table import Table

from autoaccel.progress import plain_console
from autoaccel.schedule import LR_KNOBS
from autoaccel.time_to_loss import ConvergenceResult, LossRun, runs_after_words

if TYPE_CHECKING:  # the types module calls these functions from its methods
    from autoaccel.advice.types import Advice
    from autoaccel.config import TrainingConfig

__all__ = [
    "advice_dict",
    "advice_tables",
    "same_system",
    "summary_text",
    "unwritten_pick",
]


def summary_text(advice: Advice, *, width: int = 110) -> str:
    """A readable report: the tables, then the notes."""
    console = plain_console(record=True, width=width, file=io.StringIO())
    for table in advice_tables(advice):
        console.print(table)
    for note in advice.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    return console.export_text()


def advice_dict(advice: Advice) -> dict[str, Any]:
    """A JSON-ready copy of the answer and its evidence."""
    s = advice.search
    return {
        "config": advice.config.to_dict(),
        "objective": advice.objective,
        "guard": _guard_dict(advice),
        "baseline": advice.baseline.to_dict(),
        "best": advice.best.to_dict(),
        "speedup": {
            "median": advice.speedup.median,
            "min": advice.speedup.min,
            "max": advice.speedup.max,
            "ratios": list(advice.speedup.ratios),
            "yours_kept": advice.speedup.yours_kept,
            # False: the throughput stage's pick, which the schedule study did not write
            "of_written": unwritten_pick(advice) is None,
        },
        "diagnosis": {
            "bound": advice.diagnosis.bound.value,
            "data_wait_fraction": advice.diagnosis.data_wait_fraction,
            "reasons": list(advice.diagnosis.reasons),
        },
        "recommendations": [
            {"text": r.text, "evidence": r.evidence, "measured": r.measured, "knob": r.knob}
            for r in advice.recommendations
        ],
        "search": {
            "trials_measured": s.trials_measured,
            "grid_size": s.grid_size,
            "stop_reason": s.stop_reason,
            "failures": s.failures,
            "pruned": s.pruned,
            "out_of_reach": s.out_of_reach,
            "study_name": s.study_name,
            "storage": s.storage,
            "space": [list(row) for row in advice.space.describe()],
            "shared": s.shared,
            "by_worker": s.by_worker,
            "other_hardware": s.other_hardware,
        },
        "written_by": advice.written_by,
        "plan": advice.plan,
        "fastest": _fastest_dict(advice),
        "convergence": _convergence_dict(advice.convergence),
        "wall_s": advice.wall_s,
        "notes": list(advice.notes),
    }


def advice_tables(advice: Advice) -> list[Table]:
    """The summary as rich tables: the result, (time to loss,) recommendations, the search."""
    tables = [_result_table(advice), _recommendations_table(advice), _search_table(advice)]
    if advice.convergence is not None:
        tables.insert(1, _convergence_table(advice.convergence))
    return tables


def same_system(config: TrainingConfig, other: TrainingConfig) -> bool:
    """Whether two configs train with the same system settings (all but ``LR_KNOBS``: the
    throughput stage measured these, and its paired speedup is of them)."""
    mine, theirs = config.knobs(), other.knobs()
    return all(mine[k] == theirs[k] for k in mine if k not in LR_KNOBS)


def unwritten_pick(advice: Advice) -> str | None:
    """With time-to-loss, when the schedule study wrote other system settings than the
    throughput stage's pick (the one the paired speedup measured): what it wrote instead
    ("your setup", "its own pick"); None when the pick's settings are the ones written."""
    converged = advice.convergence
    if converged is None or same_system(advice.config, advice.search.best.config):
        return None
    return "your setup" if converged.best is converged.baseline else "its own pick"


def _result_table(advice: Advice) -> Table:
    """Baseline vs. tuned: throughput, the paired speedup, the step, and each changed knob."""
    title = f"autoaccel advice ({advice.diagnosis.bound}-bound)"
    instead = unwritten_pick(advice)
    if instead is not None:
        title += (
            ": the throughput stage's pick, by samples/s; not written: the schedule study "
            f"below wrote {instead}"
        )
    elif advice.convergence is not None:
        title += ": system settings, by samples/s (the LR and schedule are below)"
    result = Table(title=title, title_justify="left")
    result.add_column("")
    result.add_column("baseline", justify="right")
    result.add_column("tuned" if instead is None else "not written", justify="right")
    b, t = advice.baseline, advice.best
    result.add_row("samples/s", f"{b.samples_per_s:,.0f}", f"{t.samples_per_s:,.0f}")
    speedup = str(advice.speedup) + ("" if instead is None else ", not the written setup's")
    result.add_row("speedup (paired)", "1.00x", speedup)
    result.add_row("data wait", f"{b.data_wait_fraction:.0%}", f"{t.data_wait_fraction:.0%}")
    result.add_row("step time", f"{b.step_time_s * 1e3:.1f} ms", f"{t.step_time_s * 1e3:.1f} ms")
    result.add_row("peak memory", _mem(b.peak_memory_bytes), _mem(t.peak_memory_bytes))
    base_params = advice.search.baseline.params
    for name, value in advice.search.best.params.items():
        if value != base_params.get(name):
            result.add_row(name, str(base_params.get(name)), str(value))
    fastest = _fastest_dict(advice)
    if fastest is not None and not fastest["written"]:
        result.add_row(
            "fastest measured",
            "",
            f"{fastest['samples_per_s']:,.0f} samples/s ({fastest['ratio']:.2f}x, one trial), "
            f"not written: {fastest['why']}",
        )
    return result


def _fastest_dict(advice: Advice) -> dict[str, Any] | None:
    """The fastest setup measured, its single-trial ratio to the baseline, whether it is
    the one written and, when not, why (the guard's line); None when not known."""
    fastest, base = advice.fastest, advice.search.baseline
    if fastest is None or base.value <= 0:
        return None
    written = fastest.params == advice.search.best.params
    why = None
    if not written:
        why = advice.guard.line if advice.guard is not None else "see the notes"
    return {
        "params": dict(fastest.params),
        "trial": fastest.number,
        "samples_per_s": fastest.value,
        "ratio": fastest.value / base.value,
        "written": written,
        "why": why,
    }


def _recommendations_table(advice: Advice) -> Table:
    recs = Table(title="Recommendations", title_justify="left")
    recs.add_column("recommendation")
    recs.add_column("evidence")
    for r in advice.recommendations:
        recs.add_row(
            r.text, ("measured: " if r.measured else "advice, not measured: ") + r.evidence
        )
    return recs


def _search_table(advice: Advice) -> Table:
    s = advice.search
    search = Table(title="Search", title_justify="left", show_header=False)
    search.add_column("")
    search.add_column("")
    unreached = (
        f"; {s.out_of_reach} not run: too few optimizer steps for the convergence check to "
        "show they learn as yours at this budget"
        if s.out_of_reach
        else ""
    )
    search.add_row(
        "trials",
        f"{s.trials_measured} measured of a {s.grid_size}-configuration "
        f"grid; {s.pruned} stopped early as clearly slower{unreached}; failures: "
        f"{', '.join(f'{n} {k}' for k, n in s.failures.items()) or 'none'}",
    )
    if advice.objective:
        search.add_row("objective", advice.objective)
    search.add_row("stopped", s.stop_reason)
    search.add_row("time", f"{advice.wall_s:.0f} s in all, search {s.wall_s:.0f} s")
    search.add_row("study", f"{s.study_name} in {s.storage}")
    search.add_row("diagnosis", str(advice.diagnosis))
    return search


def _convergence_table(c: ConvergenceResult) -> Table:
    """Your setup vs. the time-to-loss pick, and every schedule candidate."""
    table = Table(
        title=f"Time to loss: how soon each setup reaches {c.aim or 'your held-out losses'} "
        f"({c.holdout}; {c.horizon_s:.0f} s of training at most)",
        title_justify="left",
    )
    columns = ("candidate", "batch", "lr", "schedule", "warm-up", "momentum", "pace", "result")
    for column in columns:
        table.add_column(column)
    for run in [c.baseline, *c.runs, *([c.check] if c.check else [])]:
        config = run.config
        name = run.label or f"#{run.number}"
        if run is c.best:
            name += " (picked)"
        result = (
            f"{run.final:.4g} after {run.curve[-1].seconds:.1f} s"
            if run.ok
            else f"{run.outcome} ({run.message}) last {run.final:.4g}"
        )
        table.add_row(
            name,
            str(config.batch_size),
            f"{config.lr:.3g}" if config.lr is not None else "yours",
            config.schedule,
            str(config.warmup_steps),
            "yours" if config.momentum is None else f"{config.momentum:g}",
            _speed(run),
            result,
        )
    table.caption = _levels_line(c)  # with the LR range test's finding
    return table


def _speed(run: LossRun) -> str:
    """1 / pace, with each run's figure when the final round trained it again."""
    if not run.speedup:
        return "-"
    each = " (" + ", ".join(f"{1 / p:.2f}x" for p in run.paces) + ")" if run.paces else ""
    return f"{run.speedup:.2f}x{each}"


def _levels_line(c: ConvergenceResult) -> str:
    """What the pace is measured against, and the pick's figure."""
    if not c.levels:
        return "your setup did not finish the horizon: candidates ranked by their lowest loss"
    if len(c.levels) > 1:
        end = f"where it flattened ({c.baseline_plateau})" if c.baseline_plateau else "its horizon"
        line = (
            f"pace: time to reach {c.aim} (each new best of its curve up to {end}) over your "
            "setup's time, geometric mean; lower is sooner"
        )
    else:
        line = f"pace: time to reach {c.aim} over your setup's time; lower is sooner"
    if any(r.paces for r in c.runs):
        line += (
            "; the finalists were trained again on other data orders (pace over those runs: "
            "the search run that made each a finalist is left out)"
        )
    took = c.time_to_baseline_loss
    if c.best is not c.baseline and took is not None and c.speedup:
        sooner = runs_after_words(c.after_search) if c.after_search else f"{c.speedup:.2f}x"
        line += (
            f"\nthe pick reached {c.levels[-1].value:.4g} in {took:.1f} s (yours "
            f"{c.levels[-1].seconds:.1f} s); {sooner}"
        )
    if c.finding is not None:
        line += f"\nLR range test: {c.finding}"
    return line


def _convergence_dict(c: ConvergenceResult | None) -> dict[str, Any] | None:
    if c is None:
        return None

    def run_dict(run: LossRun) -> dict[str, Any]:
        return {
            "number": run.number,
            "config": run.config.knobs(),
            "outcome": run.outcome,
            "message": run.message,
            "pace": run.pace if math.isfinite(run.pace) else None,
            "paces": list(run.paces),
            "start_loss": run.start_loss,
            "start_metric": run.start_metric,
            "curve": [dataclasses.asdict(p) for p in run.curve],
        }

    return {
        "aim": c.aim,
        "horizon_s": c.horizon_s,
        "holdout": c.holdout,
        "baseline": run_dict(c.baseline),
        "best": run_dict(c.best),
        "runs": [run_dict(r) for r in c.runs],
        "levels": [dataclasses.asdict(v) for v in c.levels],
        "check": None if c.check is None else run_dict(c.check),
        "time_to_baseline_loss_s": c.time_to_baseline_loss,
        "speedup": c.speedup,
        "lr_finding": None
        if c.finding is None
        else {
            "suggestion": c.finding.suggestion,
            "confidence": c.finding.confidence,
            "reason": c.finding.reason,
        },
        "scaling_rule": {"rule": c.rule, "reason": c.rule_reason},
        "plateau": None if c.plateau is None else dataclasses.asdict(c.plateau),
        "study_name": c.study_name,
        "stop_reason": c.stop_reason,
    }


def _mem(n: int | None) -> str:
    return "unknown" if not n else f"{n / 2**20:,.0f} MiB"


def _guard_dict(advice: Advice) -> dict[str, Any] | None:
    """The throughput pick's convergence check, JSON-ready (None: it did not run)."""
    g = advice.guard
    if g is None:
        return None
    curves = {
        label: [[p.seconds, p.step, p.loss] for p in run.curve]
        for label, run in (("yours", g.yours), ("pick", g.pick))
        if run is not None
    }
    return {
        "kept": g.kept,
        "how": g.how,
        "decided_by": g.decided_by,
        "evidence": g.line,
        "pace": g.pace,
        "worst": g.worst,
        "curves": curves,
    }
