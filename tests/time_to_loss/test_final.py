"""The schedule study's final round on other data orders, and what fits its budget share."""

from __future__ import annotations

import pytest
from models import curve_of

from autoaccel.config import TrainingConfig
from autoaccel.time_to_loss import (
    Level,
    LossRun,
    final_plan,
    final_round,
    measured_plan,
)


def test_the_final_round_trains_the_best_again_and_a_lucky_one_loses() -> None:
    levels = [Level(0.5, 2.0)]
    lucky = LossRun(TrainingConfig(lr=0.1), "ok", curve=curve_of((1, 0.5)), number=3, pace=0.5)
    steady = LossRun(TrainingConfig(lr=0.2), "ok", curve=curve_of((1.2, 0.5)), number=4, pace=0.6)
    slow = LossRun(TrainingConfig(lr=0.3), "ok", curve=curve_of((3, 0.5)), number=5, pace=1.5)
    seconds = {  # on data orders 1 and 2: your setup, lucky, steady
        (None, 1): 2.0,
        (0.1, 1): 3.0,
        (0.2, 1): 1.2,
        (None, 2): 1.0,
        (0.1, 2): 2.0,
        (0.2, 2): 0.6,
    }
    trained: list[tuple[float | None, int]] = []

    def train_again(config: TrainingConfig | None, level: Level, order: int) -> LossRun:
        assert level == levels[-1]  # each run stops at the goal
        key = (config.lr if config else None, order)
        trained.append(key)
        return LossRun(config, "ok", curve=curve_of((seconds[key], 0.5)))

    said: list[str] = []
    ranked = [lucky, steady, slow]
    final = final_round(ranked, levels, train_again, 4.0, said.append, finalists=2, orders=2)
    assert trained == [(None, 1), (0.1, 1), (0.2, 1), (None, 2), (0.1, 2), (0.2, 2)]
    assert [r.number for r in final] == [3, 4]  # the third was not a finalist
    # Against your times on each order; the search run that made it a finalist left out.
    assert final[0].paces == (1.5, 2.0)
    assert final[0].pace == pytest.approx((1.5 * 2.0) ** 0.5)
    assert final[1].paces == pytest.approx((0.6, 0.6)) and final[1].pace == pytest.approx(0.6)
    assert min(final, key=lambda r: r.pace).number == 4
    assert "final round" in said[0] and "2 other data orders" in said[0]
    assert said[-1] == (
        "  #4 on 2 other orders: 1.67x your pace (its search run, 1.67x, which ranked it a "
        "finalist, left out)"
    )


def test_a_finalist_is_judged_without_the_search_run_that_made_it_one() -> None:
    # Search runs: #1 ran 4x your pace (its luck), #2 1.43x. Trained again on one other
    # order: #1 1.18x, #2 1.25x. Counting the search run would keep #1 ahead (2.17x against
    # 1.34x) for a figure that only its selection gave it.
    levels = [Level(0.5, 2.0)]
    lucky = LossRun(TrainingConfig(lr=0.1), "ok", curve=curve_of((0.5, 0.5)), number=1, pace=0.25)
    steady = LossRun(TrainingConfig(lr=0.2), "ok", curve=curve_of((1.4, 0.5)), number=2, pace=0.7)
    again = {None: 2.0, 0.1: 1.7, 0.2: 1.6}  # order 1: yours, #1, #2

    def train_again(config: TrainingConfig | None, level: Level, order: int) -> LossRun:
        return LossRun(config, "ok", curve=curve_of((again[config.lr if config else None], 0.5)))

    final = final_round([lucky, steady], levels, train_again, 4.0, print, finalists=2, orders=1)
    assert [r.paces for r in final] == [pytest.approx((0.85,)), pytest.approx((0.8,))]
    assert min(final, key=lambda r: r.pace).number == 2


def test_the_final_round_fits_its_share_of_the_budget() -> None:
    for budget, per_candidate in [(300, 10), (300, 20), (120, 5), (600, 30)]:
        finalists, orders = final_plan(budget, per_candidate)
        assert finalists >= 1 and orders * (finalists + 1) * per_candidate <= 0.3 * budget
    assert final_plan(300, 10) == (3, 2)  # room for the most
    assert final_plan(100, 20) == (0, 0)  # no room: the search's best is the pick


def test_the_final_round_grows_to_what_its_measured_runs_cost() -> None:
    # Runs that stop at the goal cost their own time, far below the cap final_plan assumes.
    assert final_plan(300, 40) == (1, 1)
    assert measured_plan(85, 9.0, [8.0, 9.0, 9.0, 10.0]) == (3, 2)
    # Your run on the first other order is measured already (for the goal): not paid again.
    assert measured_plan(85, 9.0, [8.0, 9.0, 9.0, 10.0], measured_orders=1) == (4, 2)
    assert measured_plan(85, 9.0, [8.0]) == (1, 1)  # one candidate: one finalist at most
    assert measured_plan(10, 9.0, [8.0, float("inf")]) is None  # none fits: keep the plan
