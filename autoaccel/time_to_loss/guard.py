"""The guard of a throughput pick: a faster step is worth nothing if the model learns worse.

A throughput search that changes the global batch also changes how much each sample teaches,
and the LR rule that follows it was never measured. So, with no time-to-loss study, the pick
is kept only when its loss against training time is no worse than your setup's over the
same horizon: your setup's curve sets the levels (each new best up to where it flattens),
and the pick must reach every one of them no later than your setup did (within
``GUARD_TOLERANCE``, for timing noise), the first ones included: a pick that is behind
early and ahead late is refused, since the early stretch is where a short training run,
or a modest goal, is decided. The loss is the held-out one when there is
held-out data (a script's ``evaluate`` hook, ``advise(val_data=...)``): convergence is then
*measured*; otherwise it is the training loss that ``run.backward(loss)`` sees: convergence
is only *guarded*. A pick that fails (or that no time was left to check) keeps your global
batch: its micro-batch with accumulation where that divides, else your batch size.

Your global batch alone does not make a step learn as yours: a smaller micro-batch per
process changes what batch norm sees, and a lower precision rounds the step. So any pick
whose steps are not yours (``steps_as_yours``) is checked, the fallback at your global
batch too; one that fails gives way to the fastest setup whose steps are yours.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from statistics import geometric_mean

from autoaccel.budget import GUARD_SHARE
from autoaccel.config import TrainingConfig
from autoaccel.curves import LossRun, find_plateau, level_ratios, target_levels
from autoaccel.schedule import LR_KNOBS
from autoaccel.scoring import Scoring
from autoaccel.states import Precision
from autoaccel.time_to_loss.final import outcome_line
from autoaccel.time_to_loss.training import Trainer

__all__ = [
    "GUARD_EVALS",
    "GuardVerdict",
    "check_convergence",
    "guard_horizon_s",
    "learns_as_yours",
    "same_global",
    "steps_as_yours",
]

GUARD_EVALS = 20  # points on each curve
GUARD_MIN_S, GUARD_MAX_S = 6.0, 20.0
GUARD_TOLERANCE = 1.1  # the pick may reach a level this many times later than yours (noise)
# What decides how one optimizer step learns (``steps_as_yours``); the other knobs set speed.
STEP_FIELDS = (
    "batch_size",
    "grad_accum_steps",
    "processes",
    "precision",
    *LR_KNOBS,
)


@dataclass(frozen=True)
class GuardVerdict:
    """What the guard found, for the table, the config's evidence and the record.

    Args:
        kept: Whether the pick's global batch stands.
        how: ``"unchanged"`` (the pick keeps your global batch), ``"measured"`` (held-out
            loss), ``"guarded"`` (training loss) or ``"unchecked"`` (no time to check).
        line: The evidence in one line.
        pace: The pick's time to your levels over yours (below 1: sooner), geometric mean.
        worst: The largest of those ratios: how far behind yours the pick fell at worst.
        yours: Your setup's curve the verdict stands on; pick: the pick's.
        decided_by: What the curves came from: ``"trials"`` (the search's own trials,
            ``autoaccel.time_to_loss.trial_curves``), ``"check runs"`` (runs of their own,
            ``check_convergence``), or ``""`` (nothing was compared).
    """

    kept: bool
    how: str
    line: str
    pace: float | None = None
    worst: float | None = None
    yours: LossRun | None = None
    pick: LossRun | None = None
    decided_by: str = ""


def guard_horizon_s(budget_s: float) -> float:
    """Training seconds each of the two guard runs gets, from the whole budget.

    Example:
        >>> guard_horizon_s(240), guard_horizon_s(60), guard_horizon_s(3600)
        (12.0, 6.0, 20.0)
    """
    return round(min(GUARD_MAX_S, max(GUARD_MIN_S, GUARD_SHARE * budget_s)), 1)


def same_global(pick: TrainingConfig, user: TrainingConfig) -> TrainingConfig:
    """``pick`` at your global batch (over all its processes): its micro-batch with
    accumulation where that divides each process's share, else your own batch size and
    accumulation split between the processes; one process when they cannot split your
    global batch evenly. The LR untouched.

    Example:
        >>> user = TrainingConfig(batch_size=64)
        >>> c = same_global(TrainingConfig(batch_size=16), user)
        >>> c.batch_size, c.grad_accum_steps
        (16, 4)
        >>> c = same_global(TrainingConfig(batch_size=512, channels_last=True), user)
        >>> c.batch_size, c.grad_accum_steps, c.channels_last
        (64, 1, True)
        >>> c = same_global(TrainingConfig(batch_size=128, strategy="ddp", processes=2), user)
        >>> c.batch_size, c.grad_accum_steps, c.processes, c.global_batch
        (32, 1, 2, 64)
    """
    processes, strategy = pick.processes, pick.strategy
    if user.global_batch % processes:
        processes, strategy = 1, "none"
    share = user.global_batch // processes
    if pick.batch_size <= share and share % pick.batch_size == 0:
        batch, accum = pick.batch_size, share // pick.batch_size
    elif user.batch_size % processes == 0:
        batch, accum = user.batch_size // processes, user.grad_accum_steps
    else:
        batch, accum = share, 1
    return replace(
        pick,
        batch_size=batch,
        grad_accum_steps=accum,
        processes=processes,
        strategy=strategy,
        lr=None,
        lr_scaling="none",
        warmup_steps=0,
        schedule="constant",
        schedule_steps=None,
    )


def steps_as_yours(config: TrainingConfig, user: TrainingConfig) -> bool:
    """Whether each of ``config``'s optimizer steps learns as one of yours: the same
    micro-batch, accumulation and processes (so the same global batch, and batch norm sees
    the same batches) at the same precision and LR schedule. Threads, workers,
    pinned memory, memory format and compilation change the speed only.

    Example:
        >>> user = TrainingConfig(batch_size=32)
        >>> steps_as_yours(TrainingConfig(batch_size=32, num_threads=1, channels_last=True), user)
        True
        >>> steps_as_yours(TrainingConfig(batch_size=16, strategy="ddp", processes=2), user)
        False
        >>> steps_as_yours(TrainingConfig(batch_size=32, precision="bf16-mixed"), user)
        False
    """
    return all(getattr(config, name) == getattr(user, name) for name in STEP_FIELDS)


def learns_as_yours(config: TrainingConfig, user: TrainingConfig) -> bool:
    """Whether each of ``config``'s optimizer steps learns at least as one of yours with no
    evidence needed: your steps (``steps_as_yours``), or your steps at full precision where
    yours are mixed precision (32-true is the arithmetic bf16 and fp16 autocast approximate).

    Example:
        >>> user = TrainingConfig(batch_size=32, precision="bf16-mixed")
        >>> learns_as_yours(TrainingConfig(batch_size=32, precision="32-true"), user)
        True
        >>> learns_as_yours(TrainingConfig(batch_size=64, precision="32-true"), user)
        False
    """
    if steps_as_yours(config, user):
        return True
    mixed = (Precision.BF16_MIXED.value, Precision.FP16_MIXED.value)
    full = config.precision == Precision.FP32.value and user.precision in mixed
    return full and steps_as_yours(replace(config, precision=user.precision), user)


def check_convergence(
    trainer: Trainer,
    pick: TrainingConfig,
    user: TrainingConfig,
    *,
    horizon_s: float,
    held_out: bool,
    say: Callable[[str], None] | None = None,
    yours: LossRun | None = None,
) -> GuardVerdict:
    """Train your setup and the pick (as it would be written: its LR rule and warm-up
    applied) for ``horizon_s`` each; the pick is kept when it reaches each of your levels
    no later than yours (within ``GUARD_TOLERANCE``). The line says what was found, not
    what is written instead: the caller decides that.

    Args:
        held_out: Score on held-out data (the trainer has it), else on the training loss.
        say: Called with progress lines, when given.
        yours: Your setup's run from an earlier check with the same horizon and scoring
            (not trained again), when given.
    """
    tell = say or (lambda _line: None)
    scoring = Scoring(GUARD_EVALS, held_out=held_out)
    what = "held-out loss" if held_out else "training loss"
    if yours is None:
        tell(
            f"checking the pick's convergence: your setup and the pick, {horizon_s:.0f} s "
            f"each, {what} against training time"
        )
        yours = trainer.train_for(user, seconds=horizon_s, scoring=scoring)
        tell(f"  your setup: {outcome_line(yours, what)}")
    levels = target_levels(yours, find_plateau(yours.curve)) if yours.ok and yours.curve else []
    if not levels:
        return GuardVerdict(
            False,
            "unchecked",
            f"your setup's {what} did not fall within {horizon_s:.0f} s "
            f"({outcome_line(yours, what)}), so the pick's could not be compared",
            yours=yours,
        )
    if held_out:  # every candidate starts from the same weights: the same first point
        scoring = replace(scoring, start=(yours.start_loss, yours.start_metric))
    theirs = trainer.train_for(pick, seconds=horizon_s, scoring=scoring)
    ratios = level_ratios(theirs, levels, horizon_s) if theirs.ok else [math.inf]
    pace, worst = (geometric_mean(ratios), max(ratios)) if theirs.ok else (math.inf, math.inf)
    theirs = replace(theirs, pace=pace)
    tell(f"  the pick: {outcome_line(theirs, what)}")
    how = "measured" if held_out else "guarded"
    pace_or = pace if theirs.ok else None
    worst_or = worst if theirs.ok else None
    if theirs.ok and worst <= GUARD_TOLERANCE:
        line = (
            f"its {what} kept pace with yours over {horizon_s:.0f} s of training: it reached "
            f"each of your {len(levels)} levels (down to {levels[-1].value:.4g}) no later "
            f"than yours ({1 / pace:.2f}x your pace overall)"
        )
        return GuardVerdict(True, how, line, pace_or, worst_or, yours, theirs, "check runs")
    if theirs.ok:
        k = ratios.index(worst)
        level = levels[k]
        why = (
            f"its {what} fell behind yours: it reached {level.value:.4g} {worst:.2f}x as late "
            f"(yours at {level.seconds:.1f} s of {horizon_s:.0f} s; "
            f"{1 / pace:.2f}x your pace overall)"
        )
    else:
        failed = {"diverged": "diverged", "oom": "ran out of memory"}.get(
            str(theirs.outcome), "failed"
        )
        why = f"it {failed} ({theirs.message}) while yours trained"
    return GuardVerdict(False, how, why, pace_or, worst_or, yours, theirs, "check runs")
