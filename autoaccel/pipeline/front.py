"""The skeleton both front ends share (``tune_job``): the baseline, measured as the front
end measures it, then the pipeline, then with time-to-loss the schedule study, each a phase
of one progress line. ``advise()`` supplies an in-process job, ``tune`` a script's; each
says where its outputs go."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console

from autoaccel.advice import Advice
from autoaccel.budget import Budget
from autoaccel.curves import Goal
from autoaccel.pipeline.options import Job, PipelineOptions
from autoaccel.pipeline.run import run_pipeline
from autoaccel.pipeline.schedule import keep_for_schedule, tune_schedule
from autoaccel.progress import Phases
from autoaccel.search import TrialRecord
from autoaccel.states import Objective

__all__ = ["OnBest", "tune_job"]

OnBest = Callable[[TrialRecord], None]  # told of each new best trial (tune saves it at once)


def tune_job(
    baseline: Callable[[], tuple[Job, Goal | None]],
    options: PipelineOptions,
    budget: Budget,
    *,
    console: Console | None = None,
    on_best: Callable[[Job], OnBest | None] | None = None,
    then: Callable[[Advice, Job, Phases], Advice] | None = None,
) -> Advice:
    """Tune one job within ``budget`` and give the advice; nothing is written here.

    Args:
        baseline: Measures your own setup: the job, and the goal the user named (if any).
        on_best: Given the job, what to tell of each new best trial.
        then: A last stage of the front end's own, in the same progress line.
    """
    keep_for_schedule(budget, options)
    with Phases(console, budget) as phases:
        phases.enter("baseline")
        job, goal = baseline()
        told = on_best(job) if on_best is not None else None
        advice = run_pipeline(job, options, budget, console=console, on_best=told, phases=phases)
        # A shared study's worker that did not end the study writes nothing, schedule included.
        writes = advice.written_by is None
        if options.objective is Objective.TIME_TO_LOSS and job.trainer is not None and writes:
            advice = tune_schedule(
                advice,
                job.trainer,
                job.user,
                options,
                budget,
                goal=goal,
                console=console,
                phases=phases,
                own_s=job.own_training_s,
            )
        if then is not None:
            advice = then(advice, job, phases)
    return advice
