"""What the guard could ever write: a setup whose steps are not yours stands only on loss
curves that hold enough of its optimizer steps (``step_floor``), its trial's or a check
run's. ``short_of_steps`` says when a check run would hold too few (the guard then gives it
none); ``out_of_reach`` asks the same of a setup before the search measures it, so that
the search spends its time on setups it can write.
"""

from __future__ import annotations

from collections.abc import Callable

from autoaccel.budget import Budget
from autoaccel.config import TrainingConfig
from autoaccel.pipeline.options import Job
from autoaccel.search import TrialRecord
from autoaccel.time_to_loss.guard import guard_horizon_s, learns_as_yours
from autoaccel.time_to_loss.shapes import step_floor
from autoaccel.time_to_loss.trial_curves import could_decide

__all__ = ["HEADROOM", "out_of_reach", "short_of_steps"]

# A setup not measured yet may run up to this many times the best samples/s measured so far,
# when the search asks whether the guard could write it (``out_of_reach``). It matters only
# for steps of 0.2 s or more (fewer than 50 in a check run of 6-20 s): of the 436 trials the
# stored benches measured at 0.1 s a step or more, none ran more than 2.15x the best before
# it (the oracle's MLP, batch 256 fetched whole against batch 32: 0.17 s a step); of the
# 267 at 0.2 s or more, none more than 1.38x.
HEADROOM = 3.0


def short_of_steps(
    config: TrainingConfig, samples_per_s: float, yours_steps_per_s: float, budget: Budget
) -> str | None:
    """What a check run of ``config`` at ``samples_per_s`` would hold, when that is fewer
    optimizer steps than the guard needs (``step_floor`` of what one of yours holds, at
    ``yours_steps_per_s``); None when it holds enough."""
    seconds = guard_horizon_s(budget.given_s)
    steps = int(seconds * samples_per_s / config.global_batch)
    own = int(seconds * yours_steps_per_s)
    floor = step_floor(own)
    if steps >= floor:
        return None
    return (
        f"a {seconds:.0f} s check run holds {steps} optimizer steps of it (of yours "
        f"{own:,}), fewer than the {floor} that could show it learns as yours"
    )


def out_of_reach(job: Job, budget: Budget) -> Callable[[TrainingConfig, TrialRecord], str | None]:
    """The search's test of a setup before it is measured: why the guard could never write
    it at this budget, or None. A setup whose steps are not yours is written only on loss
    curves that hold enough of its optimizer steps: its trial's (``could_decide``) or a
    check run's (``short_of_steps``). Taken at ``HEADROOM`` times the best samples/s
    measured so far, a setup whose steps fall short of both is not measured, and the
    search spends its time on setups it can write (a 3m tune of the HF example on the
    2-core EPYC spent 39 s of its 111 s on batch 2 x 2048, which a 9 s check run holds 2
    steps of).

    Only with check runs to draw (``job.trainer``): without them, what the trials' curves
    can decide is all the evidence, and the search measures as before."""

    yours = job.baseline.samples_per_s / job.user.global_batch  # your steps a second

    def why(config: TrainingConfig, best: TrialRecord) -> str | None:
        if job.trainer is None or learns_as_yours(config, job.user):
            return None
        rate = HEADROOM * best.value
        if could_decide(job.baseline, rate / config.global_batch):
            return None
        short = short_of_steps(config, rate, yours, budget)
        if short is None:
            return None
        return (
            f"not run: even at {HEADROOM:g}x the best samples/s so far, {short}, and its "
            "trial's curve would hold too few to decide"
        )

    return why
