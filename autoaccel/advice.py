"""``advise()``: diagnose a training setup, search for the fastest one, prove the speedup.

The answer is an :class:`Advice`: the recommended ``TrainingConfig``, the baseline and best
measurements, the paired speedup, the diagnosis, and recommendations that each carry their
measured evidence. Advice that was not measured (gradient checkpointing, transfer learning,
early stopping, pruning / quantization / distillation) is labelled so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import random
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from autoaccel._version import __version__
from autoaccel.config import Provenance, TrainingConfig, now_iso, save_config
from autoaccel.converge import (
    ConvergenceResult,
    Goal,
    LossRun,
    check_goal,
    holdout_split,
    search_schedule,
)
from autoaccel.data import describe_data
from autoaccel.errors import UsageError
from autoaccel.measure import Measurement, MeterSettings
from autoaccel.probe import HardwareProfile, probe_system
from autoaccel.run import has_conv
from autoaccel.schedule import lr_multiplier, scaling_rule
from autoaccel.search import PRUNE_BELOW, Search, SearchResult, TrialRecord
from autoaccel.space import SearchSpace, build_space
from autoaccel.trial import OptimizerLike, make_workload, run_trial

__all__ = [
    "Advice",
    "Diagnosis",
    "Recommendation",
    "Speedup",
    "WorkloadFacts",
    "advise",
    "confirm",
    "tune_measured",
]

INPUT_BOUND = 0.20  # data wait >= 20% of the step: highly input-bound (TF profiler's line)
SOME_INPUT_WAIT = 0.05  # >= 5%: worth trying more workers (PyTorch profiler's line)
MEMORY_BOUND = 0.80  # peak >= 80% of the memory budget
DEFAULT_BUDGET_S = 120.0
DEFAULT_MAX_TRIALS = 40
CONFIRM_PAIRS = 3
OBJECTIVES = ("throughput", "time-to-loss")
THROUGHPUT_SHARE = 0.35  # of a time-to-loss budget, for the system-knob search
HORIZONS_PER_BUDGET = 10  # a schedule candidate trains for about 1/10 of what is left
FINALISTS = 3  # configs re-measured at the end of a search
FINAL_ROUNDS = 2  # extra measurements of each finalist


@dataclass(frozen=True)
class WorkloadFacts:
    """What the search space and the advice need to know about a workload."""

    model_name: str
    parameter_count: int
    dataset_size: int | None  # None when the script batches by itself
    conv_model: bool
    tensor_data: bool
    device: torch.device
    start_s: float  # fixed cost of starting one trial (a subprocess costs seconds)
    optimizer: str = ""  # the optimizer's class name: it picks the LR scaling rule


@dataclass(frozen=True)
class Speedup:
    """Best vs. baseline, measured in interleaved pairs (A B A B ...) so drift cancels."""

    ratios: tuple[float, ...]
    baseline_samples_per_s: tuple[float, ...]
    best_samples_per_s: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.ratios) if self.ratios else 1.0

    @property
    def min(self) -> float:
        return min(self.ratios) if self.ratios else 1.0

    @property
    def max(self) -> float:
        return max(self.ratios) if self.ratios else 1.0

    def __str__(self) -> str:
        return (
            f"{self.median:.2f}x (min {self.min:.2f}, max {self.max:.2f}, {len(self.ratios)} pairs)"
        )


@dataclass(frozen=True)
class Diagnosis:
    """What limits the current setup, with the figures and thresholds that say so."""

    bound: str  # input | compute | memory
    data_wait_fraction: float
    peak_memory_bytes: int | None
    memory_budget_bytes: int
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.bound}-bound: " + "; ".join(self.reasons)


@dataclass(frozen=True)
class Recommendation:
    """One piece of advice; ``measured`` says whether ``evidence`` is a measurement."""

    text: str
    evidence: str
    measured: bool
    knob: str | None = None

    def __str__(self) -> str:
        label = "measured" if self.measured else "advice, not measured"
        return f"{self.text} [{label}: {self.evidence}]"


@dataclass
class Advice:
    """The answer of ``advise()``.

    Example:
        >>> advice = advise(model, (X, y))          # doctest: +SKIP
        >>> print(advice.summary())                  # doctest: +SKIP
        >>> advice.save("autoaccel.yaml")            # doctest: +SKIP
    """

    config: TrainingConfig
    baseline: Measurement
    best: Measurement
    speedup: Speedup
    diagnosis: Diagnosis
    recommendations: list[Recommendation]
    profile: HardwareProfile
    search: SearchResult
    space: SearchSpace
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    convergence: ConvergenceResult | None = None

    def to_yaml(self) -> str:
        """The config as commented YAML, with its evidence."""
        return self.config.to_yaml()

    def save(self, path: str | Path = "autoaccel.yaml") -> Path:
        """Write the config atomically; returns the path."""
        return save_config(self.config, path)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of the answer and its evidence."""
        s = self.search
        return {
            "config": self.config.to_dict(),
            "baseline": self.baseline.to_dict(),
            "best": self.best.to_dict(),
            "speedup": {
                "median": self.speedup.median,
                "min": self.speedup.min,
                "max": self.speedup.max,
                "ratios": list(self.speedup.ratios),
            },
            "diagnosis": {
                "bound": self.diagnosis.bound,
                "data_wait_fraction": self.diagnosis.data_wait_fraction,
                "reasons": list(self.diagnosis.reasons),
            },
            "recommendations": [
                {"text": r.text, "evidence": r.evidence, "measured": r.measured, "knob": r.knob}
                for r in self.recommendations
            ],
            "search": {
                "trials_measured": s.trials_measured,
                "grid_size": s.grid_size,
                "stop_reason": s.stop_reason,
                "failures": s.failures,
                "pruned": s.pruned,
                "study_name": s.study_name,
                "storage": s.storage,
                "space": [list(row) for row in self.space.describe()],
            },
            "convergence": _convergence_dict(self.convergence),
            "wall_s": self.wall_s,
            "notes": list(self.notes),
        }

    def summary(self, *, width: int = 110) -> str:
        """A readable report: baseline vs. best, what changed and why, the search."""
        console = Console(record=True, width=width, file=io.StringIO())
        for table in self.tables():
            console.print(table)
        for note in self.notes:
            console.print(f"note: {note}", highlight=False)
        return console.export_text()

    def tables(self) -> list[Table]:
        """The summary as rich tables."""
        title = f"autoaccel advice ({self.diagnosis.bound}-bound)"
        if self.convergence is not None:
            title += ": system settings, by samples/s (the LR and schedule are below)"
        result = Table(title=title, title_justify="left")
        result.add_column("")
        result.add_column("baseline", justify="right")
        result.add_column("tuned", justify="right")
        b, t = self.baseline, self.best
        result.add_row("samples/s", f"{b.samples_per_s:,.0f}", f"{t.samples_per_s:,.0f}")
        result.add_row("speedup (paired)", "1.00x", str(self.speedup))
        result.add_row("data wait", f"{b.data_wait_fraction:.0%}", f"{t.data_wait_fraction:.0%}")
        result.add_row(
            "step time", f"{b.step_time_s * 1e3:.1f} ms", f"{t.step_time_s * 1e3:.1f} ms"
        )
        result.add_row("peak memory", _mem(b.peak_memory_bytes), _mem(t.peak_memory_bytes))
        base_params = self.search.baseline.params
        for name, value in self.search.best.params.items():
            if value != base_params.get(name):
                result.add_row(name, str(base_params.get(name)), str(value))
        recs = Table(title="Recommendations", title_justify="left")
        recs.add_column("recommendation")
        recs.add_column("evidence")
        for r in self.recommendations:
            recs.add_row(
                r.text, ("measured: " if r.measured else "advice, not measured: ") + r.evidence
            )
        s = self.search
        search = Table(title="Search", title_justify="left", show_header=False)
        search.add_column("")
        search.add_column("")
        search.add_row(
            "trials",
            f"{s.trials_measured} measured of a {s.grid_size}-configuration "
            f"grid; {s.pruned} stopped early as clearly slower; failures: "
            f"{', '.join(f'{n} {k}' for k, n in s.failures.items()) or 'none'}",
        )
        search.add_row("stopped", s.stop_reason)
        search.add_row("time", f"{self.wall_s:.0f} s in all, search {s.wall_s:.0f} s")
        search.add_row("study", f"{s.study_name} in {s.storage}")
        search.add_row("diagnosis", str(self.diagnosis))
        tables = [result, recs, search]
        if self.convergence is not None:
            tables.insert(1, _convergence_table(self.convergence))
        return tables


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
        line += "; the finalists were trained again on another data order (pace over both)"
    took = c.time_to_baseline_loss
    if c.best is not c.baseline and took is not None and c.speedup:
        again = " measured again" if c.check is not None else ""
        line += (
            f"\nthe pick reached {c.levels[-1].value:.4g} in {took:.1f} s (yours "
            f"{c.levels[-1].seconds:.1f} s); {c.speedup:.2f}x sooner{again}"
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


# --- diagnosis and guesses ------------------------------------------------------------------


def diagnose(baseline: Measurement, space: SearchSpace) -> Diagnosis:
    """Input-, compute- or memory-bound, from the baseline's measured figures."""
    wait = baseline.data_wait_fraction
    budget = space.memory.budget_bytes
    peak = baseline.memory_growth_bytes
    reasons = [f"data wait is {wait:.0%} of the step (input-bound at >= {INPUT_BOUND:.0%})"]
    if peak:
        reasons.append(
            f"the step needs {peak / 2**20:,.0f} MiB, {peak / budget:.0%} of the "
            f"{budget / 2**30:.1f} GiB budget (memory-bound at >= {MEMORY_BOUND:.0%})"
        )
    if peak and peak >= MEMORY_BOUND * budget:
        bound = "memory"
    elif wait >= INPUT_BOUND:
        bound = "input"
    else:
        bound = "compute"
    return Diagnosis(bound, wait, peak, budget, tuple(reasons))


def knob_priority(diagnosis: Diagnosis) -> list[str]:
    """The order in which the greedy phase changes knobs."""
    if diagnosis.bound == "input":
        return [
            "batch_fetch",
            "num_workers",
            "batch_size",
            "num_threads",
            "precision",
            "channels_last",
            "pin_memory",
            "compile",
        ]
    return [
        "batch_size",
        "precision",
        "channels_last",
        "batch_fetch",
        "num_threads",
        "num_workers",
        "pin_memory",
        "compile",
    ]


def guesses(
    space: SearchSpace, user: TrainingConfig, diagnosis: Diagnosis, profile: HardwareProfile
) -> list[TrainingConfig]:
    """Heuristic best guesses to seed the study with (``enqueue_trial``)."""
    params = space.params_of(user)
    names = space.names
    guess = dict(params)
    sizes = space.knob("batch_size").choices
    # Compute-bound: a larger batch amortises per-step overhead (8x, as far as memory allows).
    larger = [b for b in sizes if b <= user.batch_size * 8 and space.memory.fits(b)]
    if larger:
        guess["batch_size"] = max(larger)
    if "num_threads" in names:
        guess["num_threads"] = max(space.knob("num_threads").choices)
    if "channels_last" in names:
        guess["channels_last"] = True
    if "batch_fetch" in names:
        guess["batch_fetch"] = True
    fast_low_precision = profile.device_type == "cuda" or {"avx512_bf16", "amx_bf16"} & set(
        profile.cpu.flags
    )
    if fast_low_precision and "bf16-mixed" in space.knob("precision").choices:
        guess["precision"] = "bf16-mixed"
    if "pin_memory" in names:
        guess["pin_memory"] = True
    found = [space.config_for(guess)]
    if diagnosis.bound == "input" or diagnosis.data_wait_fraction >= SOME_INPUT_WAIT:
        workers = [w for w in space.knob("num_workers").choices if w > user.num_workers]
        if workers:
            found.append(space.config_for({**guess, "num_workers": min(workers[-1], 4)}))
    return found


# --- evidence --------------------------------------------------------------------------------


def _one_knob_pair(
    records: list[TrialRecord], best: TrialRecord, knob: str, value: Any
) -> TrialRecord | None:
    """A trial equal to ``best`` except ``knob`` = ``value`` (measured, or stopped early)."""
    target = {**best.params, knob: value}
    for r in records:
        if r.params == target and r.measurement.outcome in ("ok", "pruned"):
            return r
    return None


def _compare(knob: str, old: Any, new: Any, before: TrialRecord, after: TrialRecord) -> str:
    """Evidence text for one knob changed between two trials, all else equal."""
    trials = f"(trial {before.number} vs {after.number}, all else equal)"
    early = [r for r in (before, after) if r.measurement.outcome == "pruned"]
    rate_before = before.measurement.samples_per_s
    rate_after = after.measurement.samples_per_s
    if rate_before <= 0 or rate_after <= 0:
        return f"{knob} {old} -> {new}: no throughput to compare {trials}"
    ratio = f"{rate_after / rate_before:.2f}x samples/s"
    if early:
        ratio = (
            f"about {ratio} (trial {early[0].number} stopped early, under "
            f"{PRUNE_BELOW:.0%} of the best)"
        )
    return f"{knob} {old} -> {new}: {ratio} {trials}"


def recommendations(
    result: SearchResult, diagnosis: Diagnosis, facts: WorkloadFacts, keep_global_batch: bool
) -> list[Recommendation]:
    """What to change, each with its measured evidence, then unmeasured advice."""
    recs: list[Recommendation] = []
    base = result.baseline
    # One-knob evidence compares trials of the search itself: the best as it was measured
    # then, not its final-round median (taken later, on a machine that may have drifted).
    best = next((r for r in result.records if r.number == result.best.number), result.best)
    for knob, value in best.params.items():
        old = base.params[knob]
        if value == old:
            continue
        other = _one_knob_pair(result.records, best, knob, old)
        if other is not None:
            evidence = _compare(knob, old, value, other, best)
        else:
            evidence = (
                f"chosen together with other changes: the best trial ({best.number}) "
                f"ran {best.value / max(base.value, 1e-9):.2f}x the baseline"
            )
        recs.append(Recommendation(f"set {knob} = {value} (was {old})", evidence, True, knob))
    for knob, value in best.params.items():
        if value != base.params[knob]:
            continue
        tried = [
            r
            for r in result.records
            if r.measurement.outcome in ("ok", "pruned")
            and r.params[knob] != value
            and {k: v for k, v in r.params.items() if k != knob}
            == {k: v for k, v in best.params.items() if k != knob}
        ]
        if tried:
            alt = max(tried, key=lambda r: r.value)
            recs.append(
                Recommendation(
                    f"keep {knob} = {value}",
                    _compare(knob, value, alt.params[knob], best, alt),
                    True,
                    knob,
                )
            )
    if best.params.get("batch_size") != base.params.get("batch_size") and not keep_global_batch:
        ratio = best.params["batch_size"] / base.params["batch_size"]
        recs.append(
            Recommendation(
                f"the batch changed {ratio:g}x: scale the learning rate with it (linear for SGD, "
                "square root for Adam) and warm it up, or pass keep_global_batch=True",
                "a larger batch takes fewer, larger steps; throughput alone does not show how "
                "fast the model learns",
                False,
                "lr",
            )
        )
    failures = [r for r in result.records if r.measurement.outcome == "oom"]
    if diagnosis.bound == "memory" or failures:
        where = (
            f"batch {min(r.config.batch_size for r in failures)} ran out of memory"
            if failures
            else f"peak memory is {diagnosis.peak_memory_bytes} bytes"
        )
        recs.append(
            Recommendation(
                "gradient checkpointing (torch.utils.checkpoint) trades compute for memory to fit "
                "larger batches",
                where,
                False,
            )
        )
    params = facts.parameter_count
    samples = facts.dataset_size
    if samples and params > 1_000_000 and samples < 20 * params / 1000:
        recs.append(
            Recommendation(
                "with this little data for this model, start from a pretrained model (transfer "
                "learning) and fine-tune",
                f"{params:,} parameters for {samples:,} samples",
                False,
            )
        )
    losses = base.measurement.losses
    if len(losses) >= 30:
        third = len(losses) // 3
        first, last = statistics.fmean(losses[:third]), statistics.fmean(losses[-third:])
        if first > 0 and abs(first - last) / first < 0.01:
            recs.append(
                Recommendation(
                    "the training loss has flattened: use early stopping on a validation metric",
                    f"mean loss {first:.4g} -> {last:.4g} across the baseline run (< 1% change)",
                    False,
                )
            )
    if params >= 10_000_000:
        recs.append(
            Recommendation(
                "for deployment, consider pruning, quantization (torch.ao.quantization) or "
                "distillation into a smaller model",
                f"{params:,} parameters",
                False,
            )
        )
    return recs


# --- final round and confirm -----------------------------------------------------------------


def final_round(
    measure: Callable[[TrainingConfig], Measurement],
    records: list[TrialRecord],
    *,
    finalists: int = FINALISTS,
    rounds: int = FINAL_ROUNDS,
    max_measurements: int | None = None,
) -> tuple[TrialRecord, str | None]:
    """Re-measure the top configs interleaved and keep the one with the best median.

    One short trial per config is noisy (a busy moment on the machine can sink a good
    config or lift a poor one); the finalists get ``rounds`` more measurements each, taken
    in turn (A B C A B C) so drift hits them alike.

    Args:
        max_measurements: Trials left under ``max_trials``; fewer rounds (or none) fit.

    Returns:
        The winner (its measurement the median one) and a line of evidence, or the best
        record and None when there is nothing to compare.
    """
    ranked: list[TrialRecord] = []
    seen: set[str] = set()
    for record in sorted(records, key=lambda r: r.value, reverse=True):
        key = repr(sorted(record.config.knobs().items()))
        if record.measurement.ok and key not in seen:
            seen.add(key)
            ranked.append(record)
    top = ranked[:finalists]
    if max_measurements is not None:
        rounds = min(rounds, max(max_measurements, 0) // max(len(top), 1))
    if len(top) < 2 or rounds < 1:
        return (top[0] if top else records[0]), None
    runs: list[list[Measurement]] = [[r.measurement] for r in top]
    for _ in range(rounds):
        for i, record in enumerate(top):
            again = measure(record.config)
            if again.ok:
                runs[i].append(again)
    medians = [statistics.median(m.samples_per_s for m in ms) for ms in runs]
    won = max(range(len(top)), key=lambda i: medians[i])
    middle = sorted(runs[won], key=lambda m: m.samples_per_s)[(len(runs[won]) - 1) // 2]
    evidence = "; ".join(
        f"trial {r.number}: median {medians[i]:,.0f} samples/s of {len(runs[i])}"
        for i, r in enumerate(top)
    )
    line = f"finalists re-measured in turn ({evidence}); trial {top[won].number} kept"
    return replace(top[won], measurement=middle), line


# --- confirm ---------------------------------------------------------------------------------


def confirm(
    measure: Callable[[TrainingConfig], Measurement],
    baseline: TrainingConfig,
    best: TrainingConfig,
    *,
    pairs: int = CONFIRM_PAIRS,
) -> Speedup:
    """Re-measure baseline and best interleaved (A B A B ...); ratios of each pair."""
    ratios, base_rates, best_rates = [], [], []
    for _ in range(pairs):
        a = measure(baseline)
        b = measure(best)
        if a.ok and b.ok and a.samples_per_s > 0:
            ratios.append(b.samples_per_s / a.samples_per_s)
            base_rates.append(a.samples_per_s)
            best_rates.append(b.samples_per_s)
    return Speedup(tuple(ratios), tuple(base_rates), tuple(best_rates))


# --- the public function ---------------------------------------------------------------------


@contextmanager
def _preserved_state() -> Iterator[None]:
    """Restore RNG states, threads and matmul precision, whatever happens inside."""
    torch_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    py_rng = random.getstate()
    np_rng = np.random.get_state()
    threads = torch.get_num_threads()
    matmul = torch.get_float32_matmul_precision()
    try:
        yield
    finally:
        torch.set_rng_state(torch_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        random.setstate(py_rng)
        np.random.set_state(np_rng)
        torch.set_num_threads(threads)
        torch.set_float32_matmul_precision(matmul)


def study_name_for(
    facts: WorkloadFacts,
    space: SearchSpace,
    profile: HardwareProfile,
    settings: MeterSettings,
    *,
    prefix: str,
) -> str:
    """A study name derived from the workload, the space and the machine: same call, same
    study, so a rerun resumes; a changed space gets a new study."""
    key = repr((facts, space.describe(), profile.fingerprint(), settings))
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{prefix}-{facts.model_name}-{digest}"


def tune_measured(
    measure: Callable[..., Measurement],
    user: TrainingConfig,
    baseline: Measurement,
    facts: WorkloadFacts,
    profile: HardwareProfile,
    *,
    budget_s: float,
    max_trials: int,
    keep_global_batch: bool,
    storage: str | None,
    study_name: str | None,
    seed: int | None,
    include_compile: bool,
    settings: MeterSettings,
    console: Console | None,
    command: str,
    started: float,
    prefix: str,
    include_parallel: bool = False,
    has_loader: bool = True,
    on_best: Callable[[TrialRecord], None] | None = None,
    confirm_pairs: int = CONFIRM_PAIRS,
) -> Advice:
    """The pipeline after the baseline: space, study, confirm, advice.

    ``measure(config, prune=None)`` runs one trial, in-process for ``advise()`` or as a
    subprocess for ``autoaccel tune``; everything else is shared.
    """
    space = build_space(
        profile,
        user,
        dataset_size=facts.dataset_size,
        device=facts.device,
        conv_model=facts.conv_model,
        tensor_data=facts.tensor_data,
        baseline_memory_bytes=baseline.memory_growth_bytes,
        keep_global_batch=keep_global_batch,
        include_compile=include_compile,
        include_parallel=include_parallel,
        has_loader=has_loader,
    )
    diagnosis = diagnose(baseline, space)
    trial_s = baseline.warmup_s + baseline.window_s + facts.start_s
    search = Search(
        space,
        measure,
        budget_s=budget_s - (time.monotonic() - started),
        max_trials=max_trials,
        study_name=study_name or study_name_for(facts, space, profile, settings, prefix=prefix),
        storage=storage,
        seed=seed,
        reserve_s=(2 * confirm_pairs + FINALISTS * FINAL_ROUNDS) * trial_s,
        priority=knob_priority(diagnosis),
        console=console,
        on_best=on_best,
    )
    result = search.run(
        user, guesses(space, user, diagnosis, profile), baseline_measurement=baseline
    )
    if console:
        console.print(
            f"autoaccel: search stopped ({result.stop_reason}); re-measuring the "
            f"{FINALISTS} best, then confirming the winner vs. baseline in {confirm_pairs} "
            "interleaved pairs",
            highlight=False,
            soft_wrap=True,
        )
    winner, final_evidence = final_round(
        measure, result.records, max_measurements=max_trials - result.trials_measured
    )
    result = replace(result, best=winner)
    speedup = confirm(measure, result.baseline.config, result.best.config, pairs=confirm_pairs)
    best = result.best.measurement
    recs = recommendations(result, diagnosis, facts, keep_global_batch)
    config, scaling = _lr_follows_batch(result.best.config, user, facts)
    if scaling:
        recs.append(scaling)
    config = replace(
        config,
        provenance=Provenance(
            hardware_fingerprint=profile.fingerprint(),
            hardware=profile.describe(),
            created_at=now_iso(),
            command=command,
            versions={
                "autoaccel": __version__,
                "torch": str(torch.__version__),
                "optuna": str(optuna.__version__),
            },
            measured={
                "samples_per_s": round(best.samples_per_s, 1),
                "baseline_samples_per_s": round(result.baseline.measurement.samples_per_s, 1),
                "speedup": round(speedup.median, 3),
                "speedup_min": round(speedup.min, 3),
                "speedup_max": round(speedup.max, 3),
                "trials": result.trials_measured,
            },
            evidence={r.knob: r.evidence for r in recs if r.knob and (r.measured or r is scaling)},
        ),
    )
    notes = list(best.notes)
    if final_evidence:
        notes.append(final_evidence)
    if speedup.ratios and speedup.max < 1.0:
        notes.append(
            "the confirmed speedup is below 1: the baseline is already the fastest "
            "setup measured here"
        )
    if not speedup.ratios:
        notes.append("the confirmation runs failed; the speedup is not confirmed")
    return Advice(
        config,
        result.baseline.measurement,
        best,
        speedup,
        diagnosis,
        recs,
        profile,
        result,
        space,
        time.monotonic() - started,
        notes,
    )


def _lr_follows_batch(
    config: TrainingConfig, user: TrainingConfig, facts: WorkloadFacts
) -> tuple[TrainingConfig, Recommendation | None]:
    """A changed global batch gets the optimizer family's LR scaling rule and a warm-up."""
    if config.global_batch == user.global_batch or config.lr is not None:
        return config, None
    rule, why = scaling_rule(facts.optimizer or "unknown")
    if facts.dataset_size:  # one epoch of warm-up, within reason
        warmup = min(max(facts.dataset_size // config.global_batch, 10), 500)
    else:
        warmup = 100
    warmup = max(warmup, config.warmup_steps)
    factor = lr_multiplier(rule, user.global_batch, config.global_batch)
    scaled = replace(config, lr_scaling=rule, warmup_steps=warmup)
    return scaled, Recommendation(
        f"scale the LR x{factor:.3g} ({rule} rule) with {warmup} warm-up steps: the global "
        f"batch goes {user.global_batch} -> {config.global_batch}",
        f"{why}; prepare() applies it to every param group (lr_scaling: {rule}, not measured "
        "for convergence unless objective='time-to-loss')",
        False,
        "lr_scaling",
    )


def advise(
    model: nn.Module,
    data: Any,
    *,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    optimizer: OptimizerLike = None,
    budget_s: float | None = None,
    max_trials: int = DEFAULT_MAX_TRIALS,
    keep_global_batch: bool = False,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int | None = None,
    loader_kwargs: Mapping[str, Any] | None = None,
    include_compile: bool = False,
    settings: MeterSettings | None = None,
    progress: bool = True,
    confirm_pairs: int = CONFIRM_PAIRS,
    val_data: Any = None,
    objective: str | None = None,
    horizon_s: float | None = None,
    target: float | None = None,
    metric: Callable[[Any, Any], Any] | None = None,
) -> Advice:
    """Find the fastest training setup for ``model`` on ``data`` here, measured.

    With ``objective="time-to-loss"`` (the default when ``val_data`` is given) "fastest"
    means reaching the held-out losses your own setup reaches soonest, not the most
    samples/s: the throughput search picks the system settings, then a schedule study
    picks batch size, LR (around an LR range test's suggestion), warm-up, decay and
    momentum (see ``autoaccel.converge``).

    Args:
        model: The model to train; never changed (trials train copies).
        data: A Dataset, a DataLoader (its settings are the baseline) or tensors ``(X, y)``.
        loss_fn: ``loss_fn(model(*inputs), target)``; inferred only when unambiguous
            (cross-entropy for integer targets, or a model that returns its own loss).
        optimizer: The caller's optimizer (copied per trial, never stepped), a factory
            ``params -> optimizer``, or None for AdamW(lr=1e-3).
        budget_s: Wall-clock budget for everything (baseline, search and confirm);
            default 120 s, or 360 s for time-to-loss.
        max_trials: At most this many measured trials.
        keep_global_batch: Keep the global batch (batch x accumulation) as it is.
        storage: Optuna storage URL or SQLite path (default ``.autoaccel/studies.db``).
        study_name: Name of the study; the default is derived from the workload, so the
            same call resumes.
        seed: Seeds the sampler.
        loader_kwargs: Loader settings for a Dataset (batch_size, shuffle, collate_fn, ...).
        include_compile: Search torch.compile as well (slow: compile time per trial).
        settings: Warm-up and window lengths of each trial.
        progress: Print a line per trial on stderr.
        confirm_pairs: Interleaved baseline/best pairs measured to confirm the speedup.
        val_data: A validation set (same kinds as ``data``) to score the loss on.
        objective: ``"throughput"`` (system knobs only; the default without val_data) or
            ``"time-to-loss"`` (the default with val_data; without it, training samples
            are held out for scoring).
        horizon_s: Training time your setup gets to set the losses to beat, and at most
            each schedule candidate (default: a tenth of the budget left after the
            throughput search).
        target: The held-out quality you aim for, for time-to-loss: a loss (reached at or
            below it), or a value of ``metric``. When your setup reaches it within the
            horizon, "sooner" means sooner to it alone; else to your setup's losses.
        metric: ``metric(model(*inputs), target) -> number``, the batch's mean (e.g.
            accuracy); averaged over the held-out samples. Higher is better when the
            untrained model scores below ``target``. Needs ``target``.

    Returns:
        The ``Advice``; ``advice.config`` is the recommended ``TrainingConfig``.

    Raises:
        DataError: empty data, model and data that do not fit (naming the call and the
            shapes), no loss to infer, data on another device than the model.
        UsageError: a budget too small for one trial, max_trials < 1, a target with the
            throughput objective or a metric without one, a target the untrained model
            already reaches.

    Example:
        >>> X, y = torch.randn(4096, 32), torch.randint(0, 4, (4096,))
        >>> model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))
        >>> advice = advise(model, (X, y), budget_s=30, progress=False)  # doctest: +SKIP
        >>> advice.speedup.median > 1                                     # doctest: +SKIP
        True
    """
    settings = settings or MeterSettings()
    objective = objective or ("time-to-loss" if val_data is not None else "throughput")
    if objective not in OBJECTIVES:
        raise UsageError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    converging = objective == "time-to-loss"
    if metric is not None and target is None:
        raise UsageError(
            "metric= needs target=, the value to reach (e.g. target=0.95 for 95% accuracy)"
        )
    if target is not None and not converging:
        raise UsageError(
            "target= is for objective='time-to-loss' (give val_data, or objective="
            "'time-to-loss'); the throughput objective has no quality to reach"
        )
    if budget_s is None:
        budget_s = DEFAULT_BUDGET_S * (3 if converging else 1)
    check_budget(budget_s * (THROUGHPUT_SHARE if converging else 1), max_trials, settings)
    console = Console(stderr=True) if progress else None
    started = time.monotonic()
    spec = describe_data(data, loader_kwargs=loader_kwargs)
    holdout = None
    if converging:
        spec, holdout = holdout_split(spec, val_data, seed=seed or 0)
    with _preserved_state():
        workload = make_workload(model, spec, loss_fn=loss_fn, optimizer=optimizer, seed=seed or 0)
        profile = probe_system()
        user = workload.user_config()
        goal = None
        if holdout is not None and target is not None:
            goal = check_goal(workload, spec, holdout, Goal(target, metric, _metric_name(metric)))

        def measure(
            config: TrainingConfig, prune: Callable[[float, float], bool] | None = None
        ) -> Measurement:
            return run_trial(workload, config, settings, prune=prune)

        if console:
            console.print(
                f"autoaccel: measuring the baseline (batch {user.batch_size}, "
                f"{user.num_workers} workers, {user.num_threads} threads, fp32)",
                highlight=False,
                soft_wrap=True,
            )
        baseline = measure(user)
        if not baseline.ok:
            raise UsageError(
                f"the current setup cannot be measured ({baseline.outcome}: "
                f"{baseline.message}); fix the training step first"
            )
        facts = WorkloadFacts(
            model_name=type(model).__name__,
            parameter_count=workload.parameter_count,
            dataset_size=len(spec),
            conv_model=has_conv(model),
            tensor_data=spec.tensors is not None,
            device=workload.device,
            start_s=0.5,
            optimizer=type(workload.fresh()[1]).__name__,
        )
        advice = tune_measured(
            measure,
            user,
            baseline,
            facts,
            profile,
            budget_s=budget_s * (THROUGHPUT_SHARE if converging else 1),
            max_trials=max_trials,
            keep_global_batch=keep_global_batch,
            storage=storage,
            study_name=study_name,
            seed=seed,
            include_compile=include_compile,
            settings=settings,
            console=console,
            command=f"autoaccel.advise({type(model).__name__}, ...)",
            started=started,
            prefix="advise",
            confirm_pairs=confirm_pairs,
        )
        if holdout is None:
            return advice
        left = budget_s - (time.monotonic() - started)
        horizon = horizon_s or max(4 * settings.window_s, left / HORIZONS_PER_BUDGET)
        converged = search_schedule(
            workload,
            spec,
            holdout,
            replace(advice.config, lr_scaling="none", warmup_steps=0),
            user,
            _rates_by_batch(advice.search.records, advice.config),
            fastest=_settings_by_batch(advice.search.records, advice.config),
            budget_s=left,
            horizon_s=horizon,
            storage=storage,
            # Paces against different horizons or goals do not compare: one study for each.
            study_name=f"{study_name or advice.search.study_name}-schedule-{horizon:.0f}s"
            + (f"-{goal.name}-{goal.target:g}" if goal else ""),
            seed=seed,
            console=console,
            goal=goal,
        )
        return _with_convergence(advice, converged, user, started)


def _rates_by_batch(records: list[TrialRecord], system: TrainingConfig) -> dict[int, float]:
    """Measured samples/s by batch size, from the trials closest to the system settings."""
    others = {k: v for k, v in system.knobs().items() if k != "batch_size"}
    ok = [r for r in records if r.measurement.ok]
    same = [r for r in ok if all(r.config.knobs().get(k) == v for k, v in others.items())]
    rates: dict[int, float] = {}
    for record in same or ok:
        b = record.config.batch_size
        rates[b] = max(rates.get(b, 0.0), record.measurement.samples_per_s)
    return rates


# How the cores are split between compute threads and loader workers, and the loader's
# settings: what suits one batch size does not suit another.
CPU_SPLIT_KNOBS = (
    "num_threads",
    "num_workers",
    "persistent_workers",
    "prefetch_factor",
    "pin_memory",
)


def _settings_by_batch(
    records: list[TrialRecord], system: TrainingConfig
) -> dict[int, TrainingConfig]:
    """The system pick's settings for each measured batch size, with the compute threads
    and loader settings (workers, prefetch, pinning) of the fastest trial measured at that
    batch size: how much loading help a step needs, and so how the cores are best split
    between threads and workers, depends on the batch; the model-side settings do not.

    A batch-32 candidate of a pick measured at batch 256 with 1 thread and 2 workers thus
    trains with the split that was fastest at batch 32 (on 2 cores often 2 threads, no
    workers)."""
    best: dict[int, TrialRecord] = {}
    for record in records:
        b = record.config.batch_size
        if record.measurement.ok and (b not in best or record.value > best[b].value):
            best[b] = record
    clean: dict[str, Any] = {"lr_scaling": "none", "warmup_steps": 0}
    settings = {
        b: replace(
            system,
            batch_size=b,
            grad_accum_steps=r.config.grad_accum_steps,
            **{k: getattr(r.config, k) for k in CPU_SPLIT_KNOBS},
            **clean,
        )
        for b, r in best.items()
    }
    settings[system.batch_size] = replace(system, **clean)
    return settings


def _with_convergence(
    advice: Advice, converged: ConvergenceResult, user: TrainingConfig, started: float
) -> Advice:
    """The advice with the schedule study's pick as its config, and its evidence."""
    best = converged.best
    measured = dict(advice.config.provenance.measured)
    evidence = dict(advice.config.provenance.evidence)
    levels = converged.levels
    measured.update(
        horizon_s=round(converged.horizon_s, 1),
        heldout_loss=round(best.final, 5),
        baseline_heldout_loss=round(converged.baseline.final, 5),
    )
    if levels:
        measured["target_metric" if levels[-1].metric else "target_heldout_loss"] = round(
            levels[-1].value, 5
        )
        measured["baseline_time_to_target_s"] = round(levels[-1].seconds, 2)
    evidence["objective"] = (
        f"time-to-loss: the soonest to reach {converged.aim} ({converged.holdout})"
        + (
            f", as your setup reaches them in {converged.horizon_s:.0f} s of training (each "
            "new best of its curve, up to where it flattens)"
            if len(levels) > 1
            else ""
        )
    )
    if converged.speedup:
        measured["time_to_loss_speedup"] = round(converged.speedup, 3)
    # The pick trains with the settings measured fastest at its batch size, which may not
    # be the throughput pick's: keep only the recommendations the final config follows.
    final = (user if best is converged.baseline else best.config).knobs()
    tuned = advice.config.knobs()
    recs = [
        r
        for r in advice.recommendations
        if r.knob is None or (r.knob != "lr_scaling" and final.get(r.knob) == tuned.get(r.knob))
    ]
    config = replace(advice.config, **final)
    if best is converged.baseline:
        # Nothing reached your losses sooner than your own setup: keep it as it is.
        recs.append(
            Recommendation(
                f"keep your batch size and LR: no candidate reached "
                f"{converged.aim or 'your losses'} sooner",
                f"your setup {converged.baseline.final:.4g} after {converged.horizon_s:.0f} s; "
                f"{len(converged.runs)} candidates tried"
                + (
                    f"; the best measured again: {converged.check.speedup:.2f}x"
                    if converged.check is not None and converged.check.speedup
                    else ""
                ),
                True,
                "lr",
            )
        )
    else:
        took = converged.time_to_baseline_loss
        again = converged.check
        line = (
            f"reached {levels[-1].value:.4g} in {took:.1f} s of training (yours "
            f"{levels[-1].seconds:.1f} s); {best.speedup:.2f}x sooner to {converged.aim}"
            if levels and took is not None and best.speedup
            else f"held-out loss {best.final:.4g} vs yours {converged.baseline.final:.4g}"
        )
        if again is not None and again.ok and again.speedup:
            line += f"; measured again for the whole horizon: {again.speedup:.2f}x"
        elif again is not None:
            line += f"; measured again: {again.outcome} ({again.message})"
        evidence["lr"] = line
        evidence["schedule"] = line
        recs.append(
            Recommendation(
                f"train at batch {best.config.batch_size} with peak lr {best.config.lr:g}, "
                f"{best.config.schedule} decay after {best.config.warmup_steps} warm-up steps"
                + (f", momentum {best.config.momentum:g}" if best.config.momentum else ""),
                line,
                True,
                "lr",
            )
        )
    if converged.plateau is not None:
        recs.append(
            Recommendation(
                "stop early: the held-out loss stops improving within the horizon",
                str(converged.plateau),
                True,
                "early_stopping",
            )
        )
    config = replace(
        config,
        provenance=replace(advice.config.provenance, measured=measured, evidence=evidence),
    )
    return replace(
        advice,
        config=config,
        recommendations=recs,
        convergence=converged,
        notes=[*advice.notes, *converged.notes],
        wall_s=time.monotonic() - started,
    )


def _metric_name(metric: Callable[..., Any] | None) -> str:
    if metric is None:
        return "held-out loss"
    name = getattr(metric, "__name__", "")
    return name if name.isidentifier() else "metric"


def check_budget(budget_s: float, max_trials: int, settings: MeterSettings) -> None:
    """Refuse a budget too small for a trial and its confirmation, before any work.

    Raises:
        UsageError: naming the smallest budget that can work.
    """
    minimum_s = 3 * (settings.window_s + 1.0)
    if budget_s < minimum_s:
        raise UsageError(
            f"budget_s={budget_s:g} is too small for even one trial plus its confirmation: "
            f"give at least {minimum_s:.0f} s (e.g. budget_s=60 or --budget 1m)"
        )
    if max_trials < 1:
        raise UsageError(f"max_trials must be >= 1, got {max_trials}")
