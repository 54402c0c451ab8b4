"""The budget plan: which phases a budget affords, from the baseline's stated costs."""

from __future__ import annotations

import pytest
import torch

from autoaccel.budget import CHECK_SHARE, END_SHARE
from autoaccel.config import TrainingConfig
from autoaccel.errors import UsageError
from autoaccel.measure import Measurement, MeterSettings
from autoaccel.pipeline import Job, PhaseCosts, check_budget, plan_budget
from autoaccel.search import WorkloadFacts

FAST = PhaseCosts(trial_s=5.0, start_s=3.0)  # the CNN example here: ~5 s a trial
SLOW = PhaseCosts(trial_s=20.0, start_s=15.0)  # a script that takes 15 s to start


@pytest.mark.parametrize(
    ("minutes", "costs", "pairs", "rounds", "finalists", "check_runs", "trials"),
    [
        (1, FAST, 2, 0, 1, False, 6),
        (2, FAST, 3, 1, 3, False, 13),
        (3, FAST, 3, 2, 3, False, 23),
        (5, FAST, 3, 2, 3, True, 38),
        (10, FAST, 3, 2, 3, True, 95),
        (2, SLOW, 1, 0, 1, False, 3),
        (3, SLOW, 1, 0, 1, False, 4),
        (5, SLOW, 2, 0, 1, False, 8),
        # 4 looks fit: two finalists measured twice, not three once (autoaccel.confirm)
        (10, SLOW, 3, 2, 2, True, 13),
    ],
)
def test_which_phases_fit_each_budget(
    minutes: int,
    costs: PhaseCosts,
    pairs: int,
    rounds: int,
    finalists: int,
    check_runs: bool,
    trials: int,
) -> None:
    given = 60.0 * minutes
    plan = plan_budget(given, given - costs.trial_s, costs, guarded=True)
    got = (plan.confirm_pairs, plan.final_rounds, plan.finalists, plan.check_runs)
    assert got == (pairs, rounds, finalists, check_runs)
    assert plan.search_trials == trials
    # The shares hold: the end phases at most END_SHARE of what is left (one pair at
    # least), the check runs at most CHECK_SHARE of the budget, and all add up.
    assert plan.end_s <= max(2 * costs.trial_s, END_SHARE * plan.left_s)
    assert plan.check_s <= CHECK_SHARE * given
    assert plan.search_s + plan.end_s + plan.check_s == pytest.approx(plan.left_s)


def test_a_budget_with_no_room_to_search_is_refused_before_any_work() -> None:
    """1m for a script that takes 15 s to start plans no search trial: check_budget, which
    runs before the baseline, refuses it naming the least that works."""
    assert plan_budget(60, 40, SLOW, guarded=True).search_trials == 0
    with pytest.raises(UsageError, match=r"a budget of 60 s is too small: .* give at least 66 s"):
        check_budget(60, 40, MeterSettings(), start_s=15.0)


def test_what_does_not_fit_is_said_with_the_budget_that_would_fit_it() -> None:
    plan = plan_budget(60, 55, FAST, guarded=True)
    assert plan.missing() == [
        "time kept for check runs of their own where the trials' curves cannot decide "
        "(without it, they run only on time left over): give --budget 4m",
        "3 confirmation pairs: give --budget 2m",
    ]
    line = plan.line()
    assert line.startswith("1m: search ~6 trials (33 s); a pick whose steps differ from yours ")
    assert line.endswith(
        "2 confirmation pairs (more while time is left) (not: " + "; ".join(plan.missing()) + ")"
    )
    # ... and each budget named there affords what it was named for.
    assert plan_budget(240, 235, FAST, guarded=True).check_runs
    assert plan_budget(120, 115, FAST, guarded=True).confirm_pairs == 3


def test_fewer_pairs_asked_for_are_not_missing() -> None:
    plan = plan_budget(120, 100, SLOW, guarded=True, confirm_pairs=1)
    assert plan.confirm_pairs == 1 and not any("pairs" in m for m in plan.missing())


def test_the_plan_is_recorded_whole() -> None:
    plan = plan_budget(180, 175, FAST, guarded=True)
    data = plan.to_dict()
    assert data["line"] == plan.line()
    assert data["search_trials"] == plan.search_trials
    assert data["costs"] == {"trial_s": 5.0, "start_s": 3.0}
    assert data["check_runs"] is False and data["missing"] == plan.missing()


def test_time_to_loss_plans_no_guard() -> None:
    plan = plan_budget(180, 175, FAST, guarded=False)
    assert not plan.check_runs and plan.missing() == []
    assert "loss curves" not in plan.line()


def _job(baseline: Measurement, trial_s: float | None) -> Job:
    """A job as a front end makes it: only the baseline and the costs matter here."""
    facts = WorkloadFacts("Net", 1000, 4096, True, False, torch.device("cpu"), 0.5)
    return Job(lambda c, p=None: baseline, TrainingConfig(), baseline, facts, None, trial_s)  # type: ignore[arg-type]


def test_one_time_costs_do_not_size_the_later_phases() -> None:
    """Issue 32, 5: in-process, the baseline's first step that paid the process's one-time
    costs (a CUDA context, cuDNN's autotuning: 4 s here) counts as an ordinary step; a
    script's trial, a new process each time, pays them every time, so its wall time stands."""
    baseline = Measurement(
        outcome="ok", warmup_s=4.3, first_step_s=4.02, step_time_s=0.02, window_s=1.5
    )
    assert _job(baseline, None).one_trial_s == pytest.approx(0.3 + 1.5 + 0.5)
    assert _job(baseline, 9.0).one_trial_s == 9.0
    steady = Measurement(outcome="ok", warmup_s=0.3, first_step_s=0.02, step_time_s=0.02)
    assert _job(steady, None).one_trial_s == pytest.approx(0.3 + 0.5)


def test_what_later_phases_keep_is_in_the_plan_line() -> None:
    """tune --lr-find keeps the range test's run from the search once the baseline has
    measured a run's cost; the plan says so, and the search gets what is left."""
    plan = plan_budget(180, 150, FAST, guarded=True, kept={"the LR range test": 9.4})
    assert "(more while time is left); 9 s kept for the LR range test (not: " in plan.line()
    assert plan.to_dict()["kept"] == {"the LR range test": 9.4}
