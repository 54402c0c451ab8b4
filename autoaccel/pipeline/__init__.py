"""The one pipeline both front ends call, after they have measured the baseline.

- ``options``: what the user asked (``PipelineOptions``), what the front end measured
  (``Job``), the budget's first check;
- ``plan``: what the budget affords, decided once from the baseline's costs (every share);
- ``guard``: the fastest measured setup that has the evidence to stand;
- ``run``: the stages in order, from the plan to the advice;
- ``schedule``: with ``objective="time-to-loss"``, the schedule study as the stage after it;
- ``front``: the skeleton both front ends share (``tune_job``): baseline, pipeline, schedule.
"""

from autoaccel.pipeline.guard import faster_than_yours, guard_pick, steps_words
from autoaccel.pipeline.options import (
    ADVISE,
    MIN_TRIALS,
    TUNE,
    FrontEnd,
    Job,
    PipelineOptions,
    check_budget,
    study_name_for,
)
from autoaccel.pipeline.plan import BudgetPlan, PhaseCosts, plan_budget
from autoaccel.pipeline.run import objective_line, run_pipeline

__all__ = [
    "ADVISE",
    "MIN_TRIALS",
    "TUNE",
    "BudgetPlan",
    "FrontEnd",
    "Job",
    "PhaseCosts",
    "PipelineOptions",
    "check_budget",
    "faster_than_yours",
    "guard_pick",
    "objective_line",
    "plan_budget",
    "run_pipeline",
    "steps_words",
    "study_name_for",
]
