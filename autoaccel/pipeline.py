"""The one pipeline both front ends call, after they have measured the baseline.

``advise()`` measures in-process, ``autoaccel tune`` runs the script as a subprocess per
trial; from the baseline on, both run the same stages, drawing on the same ``Budget``:

1. ``build_space``: the knobs that apply here, bounded by the memory model;
2. ``diagnose`` and the heuristic guesses;
3. the Optuna study (``Search``), keeping time for what follows;
4. the final round (finalists re-measured in turn);
5. with the throughput objective, the guard (``autoaccel.time_to_loss.guard``): a pick whose
   steps are not yours (another batch, split or precision) is kept only when its loss keeps
   pace with your setup's;
6. the paired confirmation of what will be written;
7. the advice: recommendations with their evidence, the LR rule, the provenance;
8. with ``objective="time-to-loss"``, the schedule study (``autoaccel.time_to_loss.stage``) and
   its evidence, through the front end's ``Trainer`` (in-process or script trials).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
import torch
from rich.console import Console

from autoaccel._version import __version__
from autoaccel.advice import Advice, lr_follows_batch, recommendations
from autoaccel.budget import DEFAULT_MAX_TRIALS, Budget
from autoaccel.config import NOT_MEASURED, Provenance, TrainingConfig, now_iso
from autoaccel.confirm import (
    CONFIRM_PAIRS,
    FINAL_ROUNDS,
    FINALISTS,
    Speedup,
    confirm,
    final_round,
    knobs_key,
)
from autoaccel.curves import LossRun
from autoaccel.errors import UsageError
from autoaccel.measure import Measurement, MeterSettings
from autoaccel.probe import HardwareProfile
from autoaccel.progress import Phases, say
from autoaccel.search import (
    Diagnosis,
    Search,
    SearchResult,
    SearchSpace,
    TrialFn,
    TrialRecord,
    WorkloadFacts,
    build_space,
    diagnose,
    guesses,
    knob_priority,
    record_end_phase,
    storage_url,
)
from autoaccel.search.sharding import estimate_state
from autoaccel.search.shared import claim_end_phase, open_storage, worker_id
from autoaccel.search.space import memory_budget
from autoaccel.states import Objective
from autoaccel.time_to_loss import Trainer
from autoaccel.time_to_loss.guard import (
    RUN_OVERHEAD,
    GuardVerdict,
    check_convergence,
    guard_horizon_s,
    same_global,
    steps_as_yours,
)
from autoaccel.time_to_loss.study import batch_words

__all__ = [
    "Job",
    "PipelineOptions",
    "check_budget",
    "run_pipeline",
]

MIN_TRIALS = 4  # the least a run measures: baseline, one candidate, one confirmation pair
END_SHARE = 0.4  # at most this part of what the baseline leaves is kept for the end phases
END_PHASES = "the final round and confirmation"
GUARD_PHASE = "the convergence check"
GUARD_SHARE_MAX = 0.3  # of what the baseline leaves, at most kept for the convergence check


@dataclass(frozen=True)
class PipelineOptions:
    """What the user asked of a tuning run, gathered once by either front end."""

    max_trials: int = DEFAULT_MAX_TRIALS
    objective: Objective = Objective.THROUGHPUT
    keep_global_batch: bool = False
    storage: str | None = None  # Optuna storage URL or SQLite path
    study_name: str | None = None  # default: derived from the workload, so a rerun resumes
    seed: int | None = None
    include_compile: bool = False
    include_parallel: bool = False  # DDP over several processes (script trials only)
    settings: MeterSettings = field(default_factory=MeterSettings)
    confirm_pairs: int = CONFIRM_PAIRS
    horizon_s: float | None = None  # time-to-loss: your setup's training time
    command: str = ""  # how the user started this, for the config's provenance
    script: str | None = None  # the training script's file name, when tuning one
    prefix: str = "advise"  # of derived study names: advise | tune


@dataclass(frozen=True)
class Job:
    """What a front end measured before the pipeline: the baseline and the facts."""

    measure: TrialFn
    user: TrainingConfig  # the caller's own setup
    baseline: Measurement
    facts: WorkloadFacts
    profile: HardwareProfile
    trial_s: float | None = None  # one trial's wall time, as the baseline's took; None: estimate
    model: str | None = None  # the model's fingerprint (``model_fingerprint``)
    trainer: Trainer | None = None  # draws loss curves: the guard and the schedule study


def check_budget(
    budget_s: Any,
    max_trials: int,
    settings: MeterSettings,
    *,
    start_s: float,
    share: float = 1.0,
) -> None:
    """Refuse a budget too small for the least a run measures, before any work: the
    baseline, one candidate and one confirmation pair (``MIN_TRIALS``), each costing at
    least the measuring window and ``start_s`` (the script's interpreter, or an in-process
    trial's set-up).

    Args:
        share: The part of the budget the throughput pipeline gets (time-to-loss keeps the
            rest for the schedule study); the message still quotes the whole budget.

    Raises:
        UsageError: a budget that is not a positive, finite number of seconds, or one too
            small, naming the smallest that can work.
    """
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)):
        raise UsageError(
            f"budget_s must be a number of seconds, got {type(budget_s).__name__} {budget_s!r}"
        )
    if not math.isfinite(budget_s) or budget_s <= 0:
        raise UsageError(f"budget_s must be a positive, finite number of seconds, got {budget_s!r}")
    trial_s = start_s + settings.window_s
    minimum_s = math.ceil(MIN_TRIALS * trial_s / share)
    if budget_s < minimum_s:
        parts = "" if share == 1 else ", and the schedule study as much again"
        raise UsageError(
            f"a budget of {budget_s:g} s is too small: the baseline, one candidate and one "
            f"confirmation pair take about {MIN_TRIALS * trial_s:.0f} s here ({trial_s:.1f} s "
            f"per trial{parts}); give at least {minimum_s} s (--budget {minimum_s}s, or "
            f"budget_s={minimum_s})"
        )
    if max_trials < 1:
        raise UsageError(f"max_trials must be >= 1, got {max_trials}")


def study_name_for(
    facts: WorkloadFacts, space: SearchSpace, profile: HardwareProfile, options: PipelineOptions
) -> str:
    """A study name derived from the workload, the space and the machine: same call, same
    study, so a rerun resumes; a changed space gets a new study."""
    key = repr((facts, space.identity(), profile.fingerprint(), options.settings))
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{options.prefix}-{facts.model_name}-{digest}"


def run_pipeline(
    job: Job,
    options: PipelineOptions,
    budget: Budget,
    *,
    console: Console | None = None,
    on_best: Callable[[TrialRecord], None] | None = None,
    phases: Phases | None = None,
) -> Advice:
    """From the baseline to the advice: space, study, final round, confirmation.

    Args:
        job: The baseline and facts the front end measured, and how to measure a trial.
        options: What the user asked for.
        budget: The run's deadline; later phases' shares are already kept in it.
        console: Where progress lines go (None for silence).
        on_best: Called with each new best trial (``tune`` saves it at once).
        phases: The progress bar to tell of each phase (the front end's).
    """
    phases = phases or Phases(None, budget)
    space = _space(job, options)
    diagnosis = diagnose(job.baseline, space)
    trial_s = max(
        job.trial_s or 0.0, job.baseline.warmup_s + job.baseline.window_s + job.facts.start_s
    )
    phases.enter("search")
    result = _search(job, options, budget, space, diagnosis, trial_s, console, on_best)
    holder = _end_phase_holder(result, options, budget)
    if holder is not None:
        say(console, f"search stopped ({result.stop_reason}); {_follower_line(holder)}")
        advice = _advice(job, options, space, diagnosis, result, Speedup((), (), ()), budget)
        advice.written_by = holder
        advice.notes = [_follower_line(holder), *_other_hardware_notes(result)]
        advice.notes += _sharding_notes(space, advice.config)
        return advice
    say(
        console,
        f"search stopped ({result.stop_reason}); re-measuring the {FINALISTS} best, then "
        f"confirming the winner vs. baseline in up to {options.confirm_pairs} interleaved pairs",
    )
    phases.enter("final round")
    confirm_s = 2 * options.confirm_pairs * trial_s
    end = _EndPhase(job.measure, result.records, "final round")
    winner, final_evidence = final_round(
        end,
        result.records,
        max_measurements=options.max_trials - result.trials_measured,
        budget=budget,
        trial_s=trial_s,
        keep_s=confirm_s,
    )
    result = replace(result, best=winner)
    verdict = None
    if _guarded(job, options):
        phases.enter("convergence check")
        result, verdict = _guard(job, result, budget, trial_s, console)
    out_of_time = budget.left_s() < trial_s  # then confirm() measures no pair
    end.source = "confirmation"
    phases.enter("confirmation")
    speedup = _confirm_pick(end, result, options, budget, trial_s)
    pick = {**result.best.params, "trial": result.best.number, "speedup": round(speedup.median, 3)}
    record_end_phase(
        options.storage,
        result.study_name,
        space,
        end.entries,
        pick,
        _finalists(result, end),
        result.marks,
    )
    advice = _advice(job, options, space, diagnosis, result, speedup, budget, verdict)
    advice.notes = [
        *result.best.measurement.notes,
        *([final_evidence] if final_evidence else []),
        *_speedup_notes(speedup, budget if out_of_time else None),
        *_other_hardware_notes(result),
        *_sharding_notes(space, advice.config),
    ]
    return advice


def _confirm_pick(
    end: _EndPhase, result: SearchResult, options: PipelineOptions, budget: Budget, trial_s: float
) -> Speedup:
    """The pick against your setup in interleaved pairs; none when the pick is your setup
    (pairs of one setup confirm nothing)."""
    if knobs_key(result.best.config.knobs()) == knobs_key(result.baseline.config.knobs()):
        return Speedup((), (), (), yours_kept=True)
    return confirm(
        end,
        result.baseline.config,
        result.best.config,
        pairs=options.confirm_pairs,
        budget=budget,
        trial_s=trial_s,
    )


def _end_phase_holder(result: SearchResult, options: PipelineOptions, budget: Budget) -> str | None:
    """In a shared study, the other worker that runs the end phase (None: this one does).
    One worker re-measures the finalists, confirms and writes the config: the first to
    finish its search claims it (``autoaccel.search.shared.claim_end_phase``)."""
    if not result.shared:
        return None
    started_at = time.time() - budget.spent_s()
    storage = open_storage(storage_url(options.storage))
    return claim_end_phase(storage, result.study_name, worker_id(), started_at)


def _follower_line(holder: str) -> str:
    return (
        f"worker {holder} runs this shared study's final round and confirmation and writes "
        "its config; this worker writes none"
    )


def _other_hardware_notes(result: SearchResult) -> list[str]:
    if not result.other_hardware:
        return []
    return [
        f"{result.other_hardware} trials of study {result.study_name} were measured on other "
        "hardware (another fingerprint): they are not ranked with this machine's"
    ]


def _sharding_notes(space: SearchSpace, pick: TrainingConfig) -> list[str]:
    """The model-state estimate, where it decided something: the pick shards the model,
    or the model does not fit one device (FSDP advised)."""
    state = space.model_state
    if state is None or (state.fits_one() and pick.strategy != "fsdp"):
        return []
    return [f"strategy: {state.advice('processes' in space.names)}"]


def _guarded(job: Job, options: PipelineOptions) -> bool:
    """Whether the guard runs: a throughput search free to change the global batch, with a
    way to draw loss curves."""
    return (
        job.trainer is not None
        and options.objective is Objective.THROUGHPUT
        and not options.keep_global_batch
    )


def _start_s(job: Job) -> float:
    """A run's start-up here: the baseline's wall time less what it measured (a script's
    interpreter, torch and its own set-up), at least the front end's estimate."""
    measured = (job.trial_s or 0.0) - job.baseline.warmup_s - job.baseline.window_s
    return max(job.facts.start_s, measured)


def _guard_cost_s(job: Job, budget: Budget) -> float:
    """The guard's two runs: each its horizon (with scoring) and a run's start-up, as the
    baseline's measured it."""
    return 2 * (guard_horizon_s(budget.given_s) * RUN_OVERHEAD + _start_s(job))


def _record_of(config: TrainingConfig, result: SearchResult) -> TrialRecord | None:
    """The search's measured record of ``config``'s knobs (None: never measured)."""
    key = knobs_key(config.knobs())
    ok = (r for r in result.records if r.measurement.ok)
    return next((r for r in ok if knobs_key(r.config.knobs()) == key), None)


def _guard(
    job: Job, result: SearchResult, budget: Budget, trial_s: float, console: Console | None
) -> tuple[SearchResult, GuardVerdict]:
    """Keep the pick when its steps are yours or its loss keeps pace with your setup's; else
    the pick at your global batch (measured, so the confirmation compares what is written),
    checked the same way when its steps are not yours; else the fastest measured setup whose
    steps are yours (your own at worst). Each refusal is in the verdict's line."""
    budget.release(GUARD_PHASE)
    user, trainer = job.user, job.trainer
    candidate = result.best
    config, _ = lr_follows_batch(candidate.config, user, job.facts)
    if trainer is None or steps_as_yours(config, user):
        line = f"the pick's steps are yours ({_steps_words(user)}): each learns as yours"
        return result, GuardVerdict(True, "unchanged", line)
    findings: list[str] = []
    yours: LossRun | None = None
    while True:
        verdict = _check(job, result, trainer, config, budget, trial_s, yours, console)
        yours = verdict.yours or yours
        findings.append(f"{_steps_words(config)}: {verdict.line}")
        say(console, findings[-1])
        if verdict.kept:
            line = "; ".join(findings) + ("" if len(findings) == 1 else ": that is kept")
            return replace(result, best=candidate), replace(verdict, line=line)
        if config.global_batch == user.global_batch:
            break
        candidate = _at_your_global_batch(candidate.config, result, job)
        config = candidate.config
        if steps_as_yours(config, user):
            break
    if not steps_as_yours(config, user):
        candidate = _fastest_with_your_steps(result, user)
    refused = _refused(verdict, findings, candidate, job)
    say(console, refused.line.rsplit(": ", 1)[-1])
    return replace(result, best=candidate), refused


def _check(
    job: Job,
    result: SearchResult,
    trainer: Trainer,
    config: TrainingConfig,
    budget: Budget,
    trial_s: float,
    yours: LossRun | None,
    console: Console | None,
) -> GuardVerdict:
    """One candidate's convergence check (your setup's curve drawn once, on the first), or
    "unchecked" when the budget leaves no time for it: its runs, one measurement of the
    pick at your global batch if the search never took one, and one confirmation pair."""
    runs = 1 if yours is not None else 2
    user = job.user
    unmeasured = _record_of(same_global(config, user), result) is None
    moved_s = trial_s if config.global_batch != user.global_batch and unmeasured else 0.0
    cost_s = runs * (guard_horizon_s(budget.given_s) * RUN_OVERHEAD + _start_s(job))
    if not budget.allows(cost_s, keep_s=2 * trial_s + moved_s):
        return GuardVerdict(
            False,
            "unchecked",
            f"no time was left to check its convergence ({budget.stop_reason()})",
        )
    return check_convergence(
        trainer,
        config,
        job.user,
        horizon_s=guard_horizon_s(budget.given_s),
        held_out=trainer.held_out,
        say=lambda line: say(console, line),
        yours=yours,
    )


def _refused(
    verdict: GuardVerdict, findings: list[str], kept: TrialRecord, job: Job
) -> GuardVerdict:
    """The last check's verdict, its line each finding and what is written instead (your
    setup, or the fastest whose steps are yours: neither needs a check)."""
    if knobs_key(kept.config.knobs()) == knobs_key(job.user.knobs()):
        instead = "your setup is kept"
    else:
        instead = f"the fastest setup whose steps are yours is kept ({_steps_words(kept.config)})"
    return replace(verdict, kept=False, line="; ".join(findings) + ": " + instead)


def _at_your_global_batch(pick: TrainingConfig, result: SearchResult, job: Job) -> TrialRecord:
    """The fastest measured setup that keeps your global batch: the pick's knobs there
    (measured now when the search never tried them), any search trial that kept it, or
    your own setup, whichever measured most samples/s."""
    user = job.user.global_batch
    kept = [r for r in result.records if r.measurement.ok and r.config.global_batch == user]
    moved = _measured_as(same_global(pick, job.user), result, job)
    pool = [result.baseline, *kept, *([moved] if moved.measurement.ok else [])]
    return max(pool, key=lambda r: r.value)


def _fastest_with_your_steps(result: SearchResult, user: TrainingConfig) -> TrialRecord:
    """The fastest measured setup whose steps learn as yours (``steps_as_yours``): only
    threads, workers, memory format and the like changed; your own setup at worst."""
    same = [r for r in result.records if r.measurement.ok and steps_as_yours(r.config, user)]
    return max([result.baseline, *same], key=lambda r: r.value)


def _steps_words(config: TrainingConfig) -> str:
    """'batch 32 (2 processes x 16), bf16-mixed': what decides how a step learns."""
    return f"{batch_words(config)}, {config.precision}"


def _measured_as(config: TrainingConfig, result: SearchResult, job: Job) -> TrialRecord:
    """The search's record of ``config``'s knobs, or one new measurement of it (the
    baseline's record when even that fails)."""
    found = _record_of(config, result)
    if found is not None:
        return found
    measurement = job.measure(config, None)
    if not measurement.ok:
        return result.baseline
    params = {k: v for k, v in config.knobs().items() if k in result.best.params}
    return TrialRecord(-1, params, config, measurement, "guard")


class _EndPhase:
    """``measure`` for the final round and the confirmation, keeping each measurement with
    the searched params it measured and its phase (``source``), for the study's record."""

    def __init__(self, measure: TrialFn, records: list[TrialRecord], source: str) -> None:
        self.measure = measure
        self.params_of = {knobs_key(r.config.knobs()): r.params for r in records}
        self.source = source
        self.entries: list[tuple[dict[str, Any], Measurement, str]] = []

    def __call__(self, config: TrainingConfig, prune: Any = None) -> Measurement:
        measurement = self.measure(config, prune)
        params = self.params_of.get(knobs_key(config.knobs()))
        if params is not None:
            self.entries.append((params, measurement, self.source))
        return measurement


def _finalists(result: SearchResult, end: _EndPhase) -> list[tuple[dict[str, Any], list[float]]]:
    """Each config the final round measured, with all its samples/s (its best search trial
    first, as ``confirm.final_round`` counts them); the winner alone when there was none."""
    again: dict[str, list[float]] = {}
    for params, measurement, source in end.entries:
        if source == "final round":  # a failed re-measurement counts as none, as there
            rates = again.setdefault(knobs_key(params), [])
            if measurement.ok:
                rates.append(measurement.samples_per_s)
    found = []
    for key, rates in again.items():
        first = max(
            (r for r in result.records if knobs_key(r.params) == key),
            key=lambda r: r.value,
        )
        found.append((first.params, [first.measurement.samples_per_s, *rates]))
    return found or [(result.best.params, [result.best.measurement.samples_per_s])]


def _speedup_notes(speedup: Speedup, out_of: Budget | None) -> list[str]:
    """Notes on the confirmation; ``out_of`` is the budget when it left no time for it."""
    if speedup.yours_kept:
        return ["the pick is your own setup: no setup measured here was faster"]
    if out_of is not None:
        return [
            f"no time was left to confirm the speedup ({out_of.stop_reason()}); it stands on "
            "single measurements: give a larger budget to confirm it"
        ]
    if not speedup.ratios:
        return ["the confirmation runs failed; the speedup is not confirmed"]
    if speedup.max < 1.0:
        return [
            "the confirmed speedup is below 1: the baseline is already the fastest "
            "setup measured here"
        ]
    return []


def _space(job: Job, options: PipelineOptions) -> SearchSpace:
    facts = job.facts
    return build_space(
        job.profile,
        job.user,
        dataset_size=facts.dataset_size,
        device=facts.device,
        conv_model=facts.conv_model,
        tensor_data=facts.tensor_data,
        baseline_memory_bytes=job.baseline.memory_growth_bytes,
        model_state=estimate_state(
            facts.parameter_count,
            facts.optimizer,
            job.baseline.memory_growth_bytes,
            memory_budget(job.profile, facts.device),
            shared=facts.device.type != "cuda",
        ),
        keep_global_batch=options.keep_global_batch,
        include_compile=options.include_compile,
        include_parallel=options.include_parallel,
        has_loader=facts.has_loader,
    )


def _search(
    job: Job,
    options: PipelineOptions,
    budget: Budget,
    space: SearchSpace,
    diagnosis: Diagnosis,
    trial_s: float,
    console: Console | None,
    on_best: Callable[[TrialRecord], None] | None,
) -> SearchResult:
    """The Optuna study, with the end phases' time kept from it."""
    planned = (2 * options.confirm_pairs + FINALISTS * FINAL_ROUNDS) * trial_s
    # A short budget keeps one confirmation pair, not the whole plan: the search gets the rest.
    budget.keep(END_PHASES, min(planned, max(2 * trial_s, END_SHARE * budget.left_s())))
    guard_s = _guard_cost_s(job, budget)
    if _guarded(job, options) and guard_s <= GUARD_SHARE_MAX * budget.left_s():
        # Kept only when it leaves the search enough: else the guard runs if the search
        # left the time, and a pick it cannot check keeps your global batch.
        budget.keep(GUARD_PHASE, guard_s)
    search = Search(
        space,
        job.measure,
        budget=budget,
        max_trials=options.max_trials,
        study_name=options.study_name or study_name_for(job.facts, space, job.profile, options),
        storage=options.storage,
        seed=options.seed,
        priority=knob_priority(diagnosis),
        console=console,
        on_best=on_best,
        fingerprint=job.profile.fingerprint(),
    )
    try:
        return search.run(
            job.user,
            guesses(space, job.user, diagnosis, job.profile),
            baseline_measurement=job.baseline,
        )
    finally:
        budget.release(END_PHASES)


def _advice(
    job: Job,
    options: PipelineOptions,
    space: SearchSpace,
    diagnosis: Diagnosis,
    result: SearchResult,
    speedup: Speedup,
    budget: Budget,
    verdict: GuardVerdict | None = None,
) -> Advice:
    """The advice: the best config with its LR rule, evidence and provenance."""
    recs = recommendations(result, diagnosis, job.facts, options.keep_global_batch)
    config, scaling = lr_follows_batch(result.best.config, job.user, job.facts)
    if scaling:  # the rule, with its factor, says what the generic batch advice says
        recs = [r for r in recs if r.knob != "lr" or r.measured] + [scaling]
    evidence = {
        r.knob: r.evidence if r.measured else NOT_MEASURED + r.evidence
        for r in recs
        if r.knob and (r.measured or r is scaling)
    }
    evidence["objective"] = objective_line(options, verdict)
    provenance = _provenance(job, options, result, speedup, evidence)
    if verdict is not None and verdict.pace is not None and verdict.worst is not None:
        provenance.measured["guard_pace"] = round(verdict.pace, 3)
        provenance.measured["guard_worst"] = round(verdict.worst, 3)
    config = replace(config, provenance=provenance)
    return Advice(
        config,
        result.baseline.measurement,
        result.best.measurement,
        speedup,
        diagnosis,
        recs,
        job.profile,
        result,
        space,
        budget.spent_s(),
        objective=evidence["objective"],
        guard=verdict,
    )


def objective_line(options: PipelineOptions, verdict: GuardVerdict | None) -> str:
    """What chose the pick, and whether its convergence was measured, guarded or neither."""
    if options.objective is Objective.TIME_TO_LOSS:
        return "time-to-loss (the schedule study follows)"
    if verdict is None:
        return "throughput (samples/s); convergence not checked: the global batch was " + (
            "kept as asked" if options.keep_global_batch else "free and no loss curve drawn"
        )
    label = {
        "unchanged": "not affected",
        "measured": "measured on held-out data",
        "guarded": "guarded by the training loss",
        "unchecked": "not checked",
    }[verdict.how]
    return f"throughput (samples/s); convergence {label}: {verdict.line}"


def _provenance(
    job: Job,
    options: PipelineOptions,
    result: SearchResult,
    speedup: Speedup,
    evidence: dict[str, str],
) -> Provenance:
    return Provenance(
        hardware_fingerprint=job.profile.fingerprint(),
        hardware=job.profile.describe(),
        machine=job.profile.facts(),
        created_at=now_iso(),
        command=options.command,
        script=options.script,
        model=job.model,
        versions={
            "autoaccel": __version__,
            "torch": str(torch.__version__),
            "optuna": str(optuna.__version__),
        },
        measured={
            "samples_per_s": round(result.best.measurement.samples_per_s, 1),
            "baseline_samples_per_s": round(result.baseline.measurement.samples_per_s, 1),
            "speedup": round(speedup.median, 3),
            "speedup_min": round(speedup.min, 3),
            "speedup_max": round(speedup.max, 3),
            "trials": result.trials_measured,
        },
        evidence=evidence,
    )
