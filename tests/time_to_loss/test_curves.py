"""Curves, levels, the pace and the plateau: what "sooner" means."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from models import accuracy, curve_of

from autoaccel.config import TrainingConfig
from autoaccel.curves import UNREACHED, level_ratios
from autoaccel.time_to_loss import (
    CurvePoint,
    Goal,
    Level,
    LossRun,
    find_plateau,
    goal_level,
    pace_of,
    target_levels,
)


def test_plateau_detection_needs_patience_and_a_tolerance() -> None:
    def curve(losses: list[float]) -> list[CurvePoint]:
        return [CurvePoint(float(i), 10 * i, v) for i, v in enumerate(losses)]

    flat = find_plateau(curve([2.0, 1.0, 0.6, 0.598, 0.597, 0.599, 0.6]))
    assert flat is not None and flat.step == 20 and flat.last_step == 60
    assert "improved by less than 1% over the next 3+ evaluations" in str(flat)
    assert find_plateau(curve([2.0, 1.5, 1.2, 1.0, 0.9, 0.8, 0.7])) is None
    assert find_plateau(curve([2.0, 1.0, 0.999])) is None  # too short to tell


def test_time_to_a_loss_is_interpolated_between_evaluations() -> None:
    run = LossRun(TrainingConfig(), "ok", curve=curve_of((1, 2.0), (2, 1.0)), start_loss=3.0)
    assert run.time_to(2.5) == pytest.approx(0.5)  # from the untrained loss at 0 s
    assert run.time_to(1.5) == pytest.approx(1.5)
    assert run.time_to(1.0) == 2 and run.time_to(0.9) is None
    assert LossRun(TrainingConfig(), "ok", curve=curve_of((1, 2.0))).time_to(2.5) == 1


def test_the_levels_are_your_setups_new_bests_up_to_its_plateau() -> None:
    losses = [2.0, 1.0, 0.8, 0.6, 0.5, 0.45, 0.449, 0.448, 0.45, 0.447]
    yours = LossRun(TrainingConfig(), "ok", curve=curve_of(*enumerate(losses, 1)), start_loss=1.5)
    flat = find_plateau(yours.curve)
    assert flat is not None and flat.seconds == 6
    # 2.0 is worse than the untrained model (1.5): not a level; 1.0 is reached between
    # 1 s (2.0) and 2 s, at 2 s; times are your setup's own crossings.
    assert [(v.value, v.seconds) for v in target_levels(yours, flat)] == [
        (1.0, 2.0),
        (0.8, 3.0),
        (0.6, 4.0),
        (0.5, 5.0),
        (0.45, 6.0),
    ]
    # Without a plateau: the whole horizon, best-so-far values only (0.45 at 9 s is not).
    levels = target_levels(yours, None)
    assert [v.value for v in levels][-4:] == [0.45, 0.449, 0.448, 0.447]
    assert pace_of(yours, levels, 10) == pytest.approx(1.0)


def test_a_dip_of_the_untrained_model_is_no_level_to_be_late_to() -> None:
    # The HF example's held-out loss: 0.6931 untrained, a dip to 0.6837 at 0.5 s, flat
    # until learning starts. A candidate level with yours from then on, whose flat start
    # happened not to dip, was refused as "5x late" to 0.6837.
    yours = LossRun(
        TrainingConfig(),
        "ok",
        curve=curve_of((0.5, 0.6837), (1.0, 0.685), (2.0, 0.6), (3.0, 0.45), (4.0, 0.4)),
        start_loss=0.6931,
    )
    levels = target_levels(yours, None)
    assert [v.value for v in levels] == [0.6, 0.45, 0.4]  # 0.6837: within 10% of its drop
    level_later = LossRun(
        TrainingConfig(),
        "ok",
        curve=curve_of((0.5, 0.693), (1.0, 0.69), (2.0, 0.6), (3.0, 0.45), (4.0, 0.4)),
        start_loss=0.6931,
    )
    assert pace_of(level_later, levels, 4.0) == pytest.approx(1.0, rel=0.02)
    # As a level, the dip made it 2x late there: the guard's check refuses past 1.1x.
    assert level_ratios(level_later, [Level(0.6837, 0.5)], 4.0)[0] > 2.0


def test_pace_is_the_geometric_mean_of_time_ratios_and_a_miss_costs_horizons() -> None:
    levels = [Level(1.0, 2.0), Level(0.5, 4.0)]
    twice_as_fast = LossRun(TrainingConfig(), "ok", curve=curve_of((1, 1.0), (2, 0.5)))
    assert pace_of(twice_as_fast, levels, 4.0) == pytest.approx(0.5)
    missed = LossRun(TrainingConfig(), "ok", curve=curve_of((1, 1.0), (4, 0.6)))
    expected = math.sqrt(1 / 2 * (UNREACHED * 4.0 * 0.6 / 0.5) / 4)
    assert pace_of(missed, levels, 4.0) == pytest.approx(expected)
    closer = LossRun(TrainingConfig(), "ok", curve=curve_of((1, 1.0), (4, 0.55)))
    assert (
        pace_of(twice_as_fast, levels, 4) < pace_of(closer, levels, 4) < pace_of(missed, levels, 4)
    )


def test_time_to_a_metric_counts_up_when_higher_is_better() -> None:
    points = (CurvePoint(1, 5, 1.0, 0.5), CurvePoint(2, 10, 0.8, 0.9))
    run = LossRun(TrainingConfig(), "ok", curve=points, start_loss=1.4, start_metric=0.25)
    assert run.time_to(0.7, metric=True, higher=True) == pytest.approx(1.5)
    assert run.time_to(0.95, metric=True, higher=True) is None
    goal = Goal(0.7, accuracy, "accuracy")
    level = goal_level(run, goal)
    assert level == Level(0.7, pytest.approx(1.5), metric=True, higher=True)
    assert level.reached(points[1]) and not level.reached(points[0])
    assert level.score(points[1]) == -0.9  # the pruner's scale: lower is better
    # An error rate falls: it counts as lower-is-better, since the untrained model is above.
    errors = LossRun(TrainingConfig(), "ok", curve=points, start_loss=1.4, start_metric=0.75)
    falling = Goal(0.6, accuracy, "error")
    assert goal_level(errors, falling) == Level(  # from 0.75 at 0 s to 0.5 at 1 s
        0.6, pytest.approx(0.6), metric=True, higher=False
    )
    assert goal_level(errors, Goal(0.3, accuracy, "error")) is None  # never that low
    # A run that missed: its shortfall ranks it (0.9 of 0.95 is closer than 0.5).
    high = Level(0.95, 1.0, metric=True, higher=True)
    assert high.shortfall(run) == pytest.approx(0.95 / 0.9)
    assert high.shortfall(replace(run, curve=points[:1])) == pytest.approx(0.95 / 0.5)
