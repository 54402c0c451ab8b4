"""Time to loss: which setup gets to a low held-out loss soonest, not which is fastest.

More samples per second is worthless if the model learns worse per second. After the
throughput search has found the fastest system settings, a second Optuna study searches
batch size, peak LR, warm-up, decay shape and length, and momentum, scored by *pace*: how
much sooner than your own setup a candidate reaches the held-out losses your setup
reaches (or the goal you name).

- ``autoaccel.curves``: curve points, levels, the pace, the plateau (below the trials, which
  draw curves too);
- ``holdout``: what the held-out loss is scored on;
- ``training``: the ``Trainer`` the study trains through, in-process runs scored on
  held-out data, and the LR range test;
- ``study``: the schedule study, stage by stage;
- ``candidates``: what its candidates are drawn from; ``shapes``: a candidate's batch at the
  settings measured nearest, the steps a run of it holds, and how it is said;
- ``final``: its final round on other data orders.
"""

from __future__ import annotations

from autoaccel.curves import (
    CurvePoint,
    Goal,
    Level,
    LossRun,
    Plateau,
    find_plateau,
    goal_level,
    level_over_orders,
    pace_of,
    target_levels,
)
from autoaccel.scoring import EVALS, Scoring
from autoaccel.time_to_loss.final import final_plan, final_round, measured_plan
from autoaccel.time_to_loss.holdout import Holdout, holdout_split
from autoaccel.time_to_loss.study import (
    ConvergenceResult,
    ScheduleInputs,
    runs_after_words,
    search_schedule,
)
from autoaccel.time_to_loss.training import (
    HeldOut,
    InProcessTrainer,
    OptimizerFacts,
    Trainer,
    check_goal,
    find_lr,
    prepared_run,
    train_for,
)

__all__ = [
    "EVALS",
    "ConvergenceResult",
    "CurvePoint",
    "Goal",
    "HeldOut",
    "Holdout",
    "InProcessTrainer",
    "Level",
    "LossRun",
    "OptimizerFacts",
    "Plateau",
    "ScheduleInputs",
    "Scoring",
    "Trainer",
    "check_goal",
    "final_plan",
    "final_round",
    "find_lr",
    "find_plateau",
    "goal_level",
    "holdout_split",
    "level_over_orders",
    "measured_plan",
    "pace_of",
    "prepared_run",
    "runs_after_words",
    "search_schedule",
    "target_levels",
    "train_for",
]
