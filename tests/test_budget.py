"""One budget, one clock: every phase draws from the deadline the front end made."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from models import FAST, mlp, tabular

from autoaccel.budget import Budget
from autoaccel.confirm import knobs_key
from autoaccel.frontends.advise import advise


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_later_phases_keep_their_share_until_they_begin() -> None:
    clock = FakeClock()
    budget = Budget(75, clock=clock)
    budget.keep("the schedule study", 40)
    budget.keep("the final round and confirmation", 10)
    clock.now += 20
    assert budget.spent_s() == 20 and budget.left_s() == 5
    assert budget.allows(5) and not budget.allows(5.1)
    assert budget.left_s(keep_s=3) == 2
    assert budget.stop_reason() == (
        "budget (75 s): 20 s spent, 40 s kept for the schedule study, "
        "10 s kept for the final round and confirmation"
    )
    budget.release("the final round and confirmation")
    assert budget.left_s() == 15
    budget.release("the schedule study")
    budget.release("a phase that never kept anything")  # harmless
    assert budget.left_s() == 55
    clock.now += 60
    assert budget.left_s() == -5 and budget.stop_reason() == "budget (75 s): 80 s spent"


def test_short_budgets_read_in_tenths() -> None:
    clock = FakeClock()
    budget = Budget(0.5, clock=clock)
    clock.now += 0.26
    assert budget.stop_reason() == "budget (0.5 s): 0.3 s spent"


def test_advise_stops_at_the_budget_it_was_given_and_says_so(tmp_path: Path) -> None:
    """The search's stop message quotes the budget as given and the time really spent."""
    budget_s = 8.0
    advice = advise(
        mlp(),
        tabular(1024),
        budget_s=budget_s,
        max_trials=500,
        settings=FAST,
        storage=str(tmp_path / "s.db"),
        progress=False,
        seed=0,
    )
    reason = advice.search.stop_reason
    found = re.fullmatch(r"budget \(8 s\): (\d+\.\d) s spent, .* kept for .*", reason)
    assert found, reason
    assert float(found.group(1)) <= advice.wall_s
    # Within the budget plus one trial, and most of it used: tests/pipeline/test_run_budget.py
    # shows it on an injected clock (here the machine's speed would decide).
    # The confirmation was kept time for; a pick that is your own setup needs none (the
    # guard keeps it where no other setup at your global batch was faster).
    if advice.speedup.yours_kept:
        assert knobs_key(advice.search.best.config.knobs()) == knobs_key(
            advice.search.baseline.config.knobs()
        )
    else:
        assert advice.speedup.ratios


def test_a_budget_too_small_is_refused_before_any_work() -> None:
    with pytest.raises(ValueError, match=r"a budget of 1 s is too small: .* give at least \d+ s"):
        advise(mlp(), tabular(64), budget_s=1, progress=False)
