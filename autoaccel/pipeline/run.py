"""The run: from the baseline the front end measured to the advice.

``advise()`` measures in-process, ``autoaccel tune`` runs the script as a subprocess per
trial; from the baseline on, both run the same stages, drawing on the same ``Budget``:

1. the budget plan (``autoaccel.pipeline.plan``), made once from the baseline's costs;
2. ``build_space``: the knobs that apply here, bounded by the memory model;
3. ``diagnose`` and the heuristic guesses (your steps with the speed-only knobs first);
4. the Optuna study (``Search``), keeping the plan's shares for what follows;
5. the final round (finalists re-measured in turn);
6. with the throughput objective, the guard stage (``autoaccel.pipeline.guard``): the
   fastest measured setup whose steps are yours, or whose loss kept pace with yours;
7. the paired confirmation of what will be written;
8. the advice: recommendations with their evidence, the LR rule, the provenance.

With ``objective="time-to-loss"`` the front end then runs the schedule study
(``autoaccel.pipeline.schedule``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import optuna
import torch
from rich.console import Console

from autoaccel._version import __version__
from autoaccel.advice import Advice, lr_follows_batch, recommendations
from autoaccel.budget import MORE_PAIRS, Budget
from autoaccel.config import NOT_MEASURED, Provenance, TrainingConfig, now_iso
from autoaccel.confirm import Speedup, confirm, final_round, judged_looks, knobs_key
from autoaccel.measure import Measurement
from autoaccel.pipeline.guard import (
    GUARD_PHASE,
    can_stand,
    guard_pick,
    search_ratio,
    steps_words,
)
from autoaccel.pipeline.options import Job, PipelineOptions, study_name_for
from autoaccel.pipeline.plan import BudgetPlan, PhaseCosts, plan_budget
from autoaccel.pipeline.reach import out_of_reach
from autoaccel.progress import Phases, say
from autoaccel.search import (
    Diagnosis,
    Search,
    SearchResult,
    SearchSpace,
    TrialFn,
    TrialRecord,
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
from autoaccel.time_to_loss.guard import GuardVerdict

__all__ = ["END_PHASES", "EndPhase", "objective_line", "ranked_finalists", "run_pipeline"]

END_PHASES = "the final round and confirmation"


def run_pipeline(
    job: Job,
    options: PipelineOptions,
    budget: Budget,
    *,
    console: Console | None = None,
    on_best: Callable[[TrialRecord], None] | None = None,
    phases: Phases | None = None,
) -> Advice:
    """From the baseline to the advice: the plan, space, study, final round, guard,
    confirmation.

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
    plan = plan_budget(
        budget.given_s,
        budget.left_s(),
        PhaseCosts(trial_s=job.one_trial_s, start_s=job.start_s),
        guarded=_guarded(options),
        confirm_pairs=options.confirm_pairs,
        kept=budget.kept(),
    )
    say(console, f"plan: {plan.line()}")
    phases.enter("search")
    result = _search(job, options, plan, budget, space, diagnosis, console, on_best)
    holder = _end_phase_holder(result, options, budget)
    if holder is not None:
        say(console, f"search stopped ({result.stop_reason}); {_follower_line(holder)}")
        advice = _advice(job, options, space, diagnosis, result, Speedup((), (), ()), budget)
        advice.written_by = holder
        advice.plan = plan.to_dict()
        advice.notes = [_follower_line(holder), *_other_hardware_notes(result)]
        advice.notes += _sharding_notes(space, advice.config)
        return advice
    say(console, f"search stopped ({result.stop_reason})")
    phases.enter("final round")
    end = EndPhase(job.measure, result.records, "final round")
    fastest = result.best
    winner, final_evidence = final_round(
        end,
        _worth_remeasuring(job, options, result),
        finalists=plan.finalists,
        rounds=plan.final_rounds,
        max_measurements=options.max_trials - result.trials_measured,
        budget=budget,
        trial_s=plan.costs.trial_s,
        keep_s=2 * plan.confirm_pairs * plan.costs.trial_s,
    )
    result = replace(result, best=winner)
    verdict = None
    if _guarded(options):
        phases.enter("convergence check")
        result, verdict = guard_pick(job, result, plan, budget, console)
    out_of_time = budget.left_s() < plan.costs.trial_s  # then confirm() measures no pair
    end.source = "confirmation"
    phases.enter("confirmation")
    speedup = confirmed = _confirm_pick(end, result, options, budget, plan.costs.trial_s)
    slower = _slower_than_yours(result, speedup)
    if slower is not None:  # the pairs overrule the single trial that made it the pick
        say(console, slower)
        result, speedup = replace(result, best=result.baseline), Speedup((), (), (), True)
        verdict = _with_refusal(verdict, slower)
    pick = {**result.best.params, "trial": result.best.number, "speedup": round(speedup.median, 3)}
    record_end_phase(
        options.storage,
        result.study_name,
        space,
        end.entries,
        pick,
        ranked_finalists(result, end),
        result.marks,
    )
    advice = _advice(job, options, space, diagnosis, result, speedup, budget, verdict)
    advice.plan = plan.to_dict()
    advice.fastest = fastest
    advice.notes = [
        *result.best.measurement.notes,
        *([final_evidence] if final_evidence else []),
        *([slower] if slower is not None else []),
        *_speedup_notes(speedup, budget if out_of_time else None, result, fastest, options),
        *_unused_notes(confirmed, budget),
        *_other_hardware_notes(result),
        *_sharding_notes(space, advice.config),
        *job.device_notes(),
    ]
    return advice


def _worth_remeasuring(
    job: Job, options: PipelineOptions, result: SearchResult
) -> list[TrialRecord]:
    """The records the final round may re-measure: with the guard, only setups faster than
    yours with the evidence to stand (the confirmation measures yours); your setup alone
    when there is none."""
    if not _guarded(options):
        return result.records
    yours = knobs_key(result.baseline.config.knobs())
    base = result.baseline.value
    found = [
        r
        for r in result.records
        if r.value > base
        and knobs_key(r.config.knobs()) != yours
        and can_stand(r, result, job.user)
    ]
    return found or [result.baseline]


def _slower_than_yours(result: SearchResult, speedup: Speedup) -> str | None:
    """Why the pick is not written, when its interleaved pairs ran slower than your setup
    (median below 1) though its trial measured it faster; None when it stands."""
    if not speedup.ratios or speedup.median >= 1.0:
        return None
    trial = search_ratio(result, result.best)
    return (
        f"{steps_words(result.best.config)} (trial {result.best.number}) ran at "
        f"{speedup.median:.2f}x yours in {len(speedup.ratios)} interleaved pairs (min "
        f"{speedup.min:.2f}, max {speedup.max:.2f}), though its trial measured {trial:.2f}x: "
        "your setup is kept"
    )


def _with_refusal(verdict: GuardVerdict | None, line: str) -> GuardVerdict:
    """The guard's verdict once the confirmation refused its pick: your setup written."""
    if verdict is None:
        return GuardVerdict(False, "unchecked", line)
    return replace(verdict, kept=False, line=f"{verdict.line}; then {line}", pace=None, worst=None)


def _guarded(options: PipelineOptions) -> bool:
    """Whether the guard stage runs: the throughput objective (time-to-loss measures the
    schedule it writes on held-out data instead)."""
    return options.objective is Objective.THROUGHPUT


def _confirm_pick(
    end: EndPhase, result: SearchResult, options: PipelineOptions, budget: Budget, trial_s: float
) -> Speedup:
    """The pick against your setup in interleaved pairs; none when the pick is your setup
    (pairs of one setup confirm nothing)."""
    if knobs_key(result.best.config.knobs()) == knobs_key(result.baseline.config.knobs()):
        return Speedup((), (), (), yours_kept=True)
    return confirm(
        end,
        result.baseline.config,
        result.best.config,
        pairs=MORE_PAIRS * options.confirm_pairs,  # what is left of the end phases' share
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


class EndPhase:
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


def ranked_finalists(
    result: SearchResult, end: EndPhase
) -> list[tuple[dict[str, Any], list[float]]]:
    """Each config the final round measured, with the samples/s it was judged on, as
    ``confirm.final_round`` judges (``judged_looks``); the winner alone when there was no
    final round."""
    again: dict[str, list[float]] = {}
    for params, measurement, source in end.entries:
        if source == "final round":  # a failed re-measurement counts as none, as there
            rates = again.setdefault(knobs_key(params), [])
            if measurement.ok:
                rates.append(measurement.samples_per_s)
    found = []
    for key, rates in again.items():
        search = [r.value for r in result.records if r.value and knobs_key(r.params) == key]
        params = next(p for p, _, _ in end.entries if knobs_key(p) == key)
        found.append((params, judged_looks(search, rates)))
    return found or [(result.best.params, [result.best.measurement.samples_per_s])]


def _unused_notes(speedup: Speedup, budget: Budget) -> list[str]:
    """Why a run that kept your setup ended well inside its budget: the time kept for the
    confirmation had nothing to confirm (issue 31: a run uses its budget or says why)."""
    later = {phase for phase, s in budget.kept().items() if s > 0} - {END_PHASES, GUARD_PHASE}
    if later:
        return []  # a phase after this one (the schedule study) gets the time left
    if not speedup.yours_kept or budget.spent_s() >= 0.9 * budget.given_s:
        return []
    return [
        f"the run ended after {budget.spent_s():.0f} s of its {budget.given_s:.0f} s: the "
        "time kept for the confirmation had nothing to confirm once your setup was kept"
    ]


def _speedup_notes(
    speedup: Speedup,
    out_of: Budget | None,
    result: SearchResult,
    fastest: TrialRecord,
    options: PipelineOptions,
) -> list[str]:
    """Notes on the confirmation; ``out_of`` is the budget when it left no time for it.
    ``fastest`` is the fastest setup measured, which the written one may not be. With the
    time-to-loss objective this picks only the system settings: the schedule study after
    it may still write another batch size, LR and schedule."""
    schedule_follows = options.objective is Objective.TIME_TO_LOSS
    if speedup.yours_kept:
        pick = (
            "the system settings picked are your own"
            if schedule_follows
            else "the pick is your own setup"
        )
        if fastest.value > result.baseline.value and fastest is not result.baseline:
            ratio = fastest.value / result.baseline.value
            return [
                f"{pick}, though setups up to {ratio:.2f}x as fast were "
                "measured in single trials: none of them both had the evidence to stand and "
                "ran faster than yours in interleaved pairs (the objective line says why)"
            ]
        return [f"{pick}: no setup measured here was faster"]
    if out_of is not None:
        return [
            f"no time was left to confirm the speedup ({out_of.stop_reason()}); it stands on "
            "single measurements: give a larger budget to confirm it"
        ]
    if not speedup.ratios:
        return ["the confirmation runs failed; the speedup is not confirmed"]
    return []


def _space(job: Job, options: PipelineOptions) -> SearchSpace:
    """The search space on the device the trials train on (``Job.device``); a baseline
    measured on another device does not seed its memory model."""
    facts, choice = job.facts, job.device
    device = choice.device
    grown = job.baseline.memory_growth_bytes if device == facts.device else None
    return build_space(
        job.profile,
        job.user,
        dataset_size=facts.dataset_size,
        device=device,
        conv_model=facts.conv_model,
        tensor_data=facts.tensor_data,
        baseline_memory_bytes=grown,
        model_state=estimate_state(
            facts.parameter_count,
            facts.optimizer,
            grown,
            memory_budget(job.profile, device),
            shared=device.type != "cuda",
        ),
        keep_global_batch=options.keep_global_batch,
        include_compile=options.include_compile,
        include_parallel=options.include_parallel,
        has_loader=facts.has_loader,
        optimizer=facts.optimizer,
        device_reason=choice.reason,
        fixed=facts.fixed,
    )


def _search(
    job: Job,
    options: PipelineOptions,
    plan: BudgetPlan,
    budget: Budget,
    space: SearchSpace,
    diagnosis: Diagnosis,
    console: Console | None,
    on_best: Callable[[TrialRecord], None] | None,
) -> SearchResult:
    """The Optuna study, with the plan's shares for the later phases kept from it."""
    budget.keep(END_PHASES, plan.end_s)
    if plan.check_runs:
        budget.keep(GUARD_PHASE, plan.check_s)
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
        workload=f"{options.script or job.facts.model_name} (model {job.model or '?'})",
        out_of_reach=out_of_reach(job, budget) if _guarded(options) else None,
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
    config, scaling = result.best.config, None
    if verdict is None or verdict.decided_by != "trials":
        # A pick kept on its trial's own curve trained at your LR: it is written as measured.
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
        "unchanged": "not affected (the written setup's steps learn as yours)",
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
