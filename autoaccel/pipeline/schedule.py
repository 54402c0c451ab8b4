"""The schedule study as a stage of the pipeline, after the throughput search.

With ``objective="time-to-loss"`` the front ends keep this stage's share of the budget
back from the throughput search (``keep_for_schedule``), run ``pipeline.run_pipeline``,
then ``tune_schedule``: the schedule study (``study.search_schedule``) on the throughput
pick's system settings, each global batch with the precision and the process/thread/loader
split measured fastest for it, through the front end's ``Trainer`` (in-process or script
trials).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rich.console import Console

from autoaccel.advice import Advice, with_convergence
from autoaccel.budget import HORIZONS_PER_BUDGET, THROUGHPUT_SHARE, Budget
from autoaccel.config import TrainingConfig
from autoaccel.curves import Goal
from autoaccel.pipeline.options import PipelineOptions
from autoaccel.progress import Phases, say
from autoaccel.search import TrialRecord
from autoaccel.states import Objective
from autoaccel.time_to_loss.study import ScheduleInputs, search_schedule
from autoaccel.time_to_loss.training import Trainer

__all__ = [
    "SCHEDULE_PHASE",
    "keep_for_schedule",
    "rates_by_batch",
    "schedule_horizon",
    "settings_by_batch",
    "tune_schedule",
]

SCHEDULE_PHASE = "the schedule study"


def tune_schedule(
    advice: Advice,
    trainer: Trainer,
    user: TrainingConfig,
    options: PipelineOptions,
    budget: Budget,
    *,
    goal: Goal | None = None,
    console: Console | None = None,
    phases: Phases | None = None,
    own_s: float | None = None,
) -> Advice:
    """The schedule study on the throughput pick's system settings, and its advice.

    Args:
        trainer: Trains candidates and draws their held-out curves.
        user: Your own setup.
        goal: The held-out loss or metric value the user aims for, if named.
        phases: The progress bar to tell of the phase.
        own_s: Your script's own training time here, when it says (``Job.own_training_s``).
    """
    budget.release(SCHEDULE_PHASE)
    if phases is not None:
        phases.enter("schedule study")
    horizon, why = schedule_horizon(options, budget.left_s(), own_s)
    say(console, f"time-to-loss horizon: {horizon:.0f} s of training, {why}")
    # Paces against different horizons or goals do not compare: one study for each.
    name = f"{options.study_name or advice.search.study_name}-schedule-{horizon:.0f}s"
    if goal is not None:
        name += f"-{goal.name}-{goal.target:g}"
    system = replace(advice.config, lr_scaling="none", warmup_steps=0)  # the study sets LRs
    inputs = ScheduleInputs(
        system=system,
        user=user,
        rates=rates_by_batch(advice.search.records, system),
        fastest=settings_by_batch(advice.search.records, advice.config),
        horizon_s=horizon,
        study_name=name,
        goal=goal,
        storage=options.storage,
        seed=options.seed,
    )
    converged = search_schedule(trainer, inputs, budget, console=console)
    return with_convergence(advice, converged, user, wall_s=budget.spent_s())


def schedule_horizon(
    options: PipelineOptions, left_s: float, own_s: float | None
) -> tuple[float, str]:
    """Your setup's training time in the schedule study (the losses to beat are its), and
    why: ``--horizon``; else your script's own training where it says how long that is and
    it fits; else a share of what the budget leaves (``HORIZONS_PER_BUDGET``). At least four
    measurement windows: a shorter run's held-out curve is a point or two.

    "Sooner to your script's own validation loss" is the question a Trainer script asks (its
    epochs end there); a horizon past its own training set levels near the loss's floor,
    where one evaluation's noise moves the time to them by seconds (the HF example: 32 s
    against its own 5 s, and two runs of one setup 0.60-0.97x apart by pace).

    Example:
        >>> from autoaccel.pipeline import TUNE
        >>> options = PipelineOptions.checked(TUNE, objective="time-to-loss")
        >>> schedule_horizon(options, 300.0, 4.9)[0], schedule_horizon(options, 300.0, 90.0)[0]
        (6.0, 30.0)
    """
    floor_s = 4 * options.settings.window_s
    share_s = max(floor_s, left_s / HORIZONS_PER_BUDGET)
    if options.horizon_s:
        return options.horizon_s, "as --horizon asks"
    if own_s is not None and own_s < share_s:
        horizon = max(floor_s, own_s)
        return horizon, f"your script's own training ({own_s:.1f} s at your samples/s)" + (
            f", at least {floor_s:.0f} s" if own_s < floor_s else ""
        )
    if own_s is not None:
        return share_s, (
            f"what the budget holds (your script's own training takes {own_s:.0f} s here)"
        )
    return share_s, "a tenth of what the budget leaves"


# How the cores are split between processes, compute threads and loader workers, the
# loader's settings and the precision: what suits one batch size does not suit another (two
# processes win at batch 512 and lose at 32, where the gradient all-reduce outweighs the
# compute; on a CPU, bf16 autocast won at HF's batch 1024 and ran 0.81x fp32 at batch 32,
# where its casts outweigh the faster matmuls).
BATCH_KNOBS = (
    "processes",
    "strategy",
    "num_threads",
    "num_workers",
    "persistent_workers",
    "prefetch_factor",
    "pin_memory",
    "precision",
)


def rates_by_batch(records: list[TrialRecord], system: TrainingConfig) -> dict[int, float]:
    """Measured samples/s by global batch: at each, the fastest trial with the system pick's
    other settings (memory format, compilation, ...; its processes, threads, loader and
    precision may differ, as a candidate's do: ``settings_by_batch``); from all trials when
    none shares them."""
    free = {"batch_size", "grad_accum_steps", *BATCH_KNOBS}
    others = {k: v for k, v in system.knobs().items() if k not in free}
    ok = [r for r in records if r.measurement.ok]
    same = [r for r in ok if all(r.config.knobs().get(k) == v for k, v in others.items())]
    rates: dict[int, float] = {}
    for record in same or ok:
        b = record.config.global_batch
        rates[b] = max(rates.get(b, 0.0), record.measurement.samples_per_s)
    return rates


def settings_by_batch(
    records: list[TrialRecord], system: TrainingConfig
) -> dict[int, TrainingConfig]:
    """The system pick's settings for each measured global batch, with the processes,
    compute threads, loader settings (workers, prefetch, pinning) and precision of the
    fastest trial measured at that global batch, and its split of it into per-process batch
    and accumulation: how much loading help a step needs, and so how the cores are best
    split between processes, threads and workers, depends on the batch, and so does what
    bf16 autocast saves against what its casts cost; memory format and compilation do not.

    A global-batch-32 candidate of a pick measured with 2 processes x 256 in bf16 thus
    trains with the split and precision that were fastest at 32 (on 2 cores often 1
    process, 2 threads, no workers; for a tiny transformer, fp32)."""
    best: dict[int, TrialRecord] = {}
    for record in records:
        b = record.config.global_batch
        if record.measurement.ok and (b not in best or record.value > best[b].value):
            best[b] = record
    clean: dict[str, Any] = {"lr_scaling": "none", "warmup_steps": 0}
    settings = {
        b: replace(
            system,
            batch_size=r.config.batch_size,
            grad_accum_steps=r.config.grad_accum_steps,
            **{k: getattr(r.config, k) for k in BATCH_KNOBS},
            **clean,
        )
        for b, r in best.items()
    }
    settings[system.global_batch] = replace(system, **clean)
    return settings


def keep_for_schedule(budget: Budget, options: PipelineOptions) -> None:
    """With time-to-loss, hold the schedule study's share back from the throughput search."""
    if options.objective is Objective.TIME_TO_LOSS:
        budget.keep(SCHEDULE_PHASE, (1 - THROUGHPUT_SHARE) * budget.given_s)
