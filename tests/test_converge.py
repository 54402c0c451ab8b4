"""The time-to-loss machinery: held-out data, training for a horizon, the schedule study."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from models import Pairs, learnable, mlp

import autoaccel
from autoaccel.config import TrainingConfig
from autoaccel.errors import DataError, UsageError
from autoaccel.frontends.advise import advise
from autoaccel.runtime.data import describe_data
from autoaccel.time_to_loss import (
    CurvePoint,
    Goal,
    HeldOut,
    Level,
    LossRun,
    Scoring,
    final_plan,
    final_round,
    find_lr,
    find_plateau,
    goal_level,
    holdout_split,
    pace_of,
    target_levels,
    train_for,
)
from autoaccel.time_to_loss.curves import UNREACHED
from autoaccel.trials.workload import make_workload


def workload_of(data: tuple[torch.Tensor, torch.Tensor], **loader: object):  # type: ignore[no-untyped-def]
    model = mlp()
    spec = describe_data(data, loader_kwargs=loader)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return make_workload(model, spec, loss_fn=None, optimizer=optimizer), spec


def test_held_out_samples_are_never_trained_on() -> None:
    x, y = learnable(1000)
    spec = describe_data((x, y), loader_kwargs={"batch_size": 32})
    train, holdout = holdout_split(spec)
    assert len(train) == 900 and len(holdout.spec) == 100
    assert train.tensors is not None and holdout.spec.tensors is not None
    seen = {tuple(row.tolist()) for row in train.tensors[0]}
    assert not any(tuple(row.tolist()) in seen for row in holdout.spec.tensors[0])
    assert "held out" in holdout.source

    dataset = describe_data(Pairs(200), loader_kwargs={"batch_size": 8})
    train, holdout = holdout_split(dataset)
    assert (len(train), len(holdout.spec)) == (180, 20)


def test_bad_validation_data_is_named() -> None:
    spec = describe_data(learnable(1000), loader_kwargs={"batch_size": 64})
    with pytest.raises(DataError, match="validation set has 10 samples, fewer than one batch"):
        holdout_split(spec, learnable(10))
    small = describe_data(learnable(100), loader_kwargs={"batch_size": 64})
    with pytest.raises(DataError, match="too few to hold 64 out"):
        holdout_split(small)
    _, holdout = holdout_split(spec, learnable(300))
    assert holdout.source == "the validation set (300 samples)"


def test_a_normal_run_reproduces_what_the_search_measured() -> None:
    """Same config, same steps: train_for's held-out loss equals prepare()'s own loop."""
    data = learnable(1024)
    workload, spec = workload_of(data, batch_size=32, shuffle=False)
    train, holdout = holdout_split(spec, learnable(256))
    config = TrainingConfig(
        batch_size=64,
        grad_accum_steps=2,
        lr=0.2,
        momentum=0.8,
        warmup_steps=3,
        schedule="cosine",
        schedule_steps=20,
    )
    measured = train_for(
        workload, config, HeldOut(train, holdout), seconds=60, scoring=Scoring(max_steps=12)
    )
    assert measured.ok and measured.curve[-1].step == 12

    torch.manual_seed(0)
    model = mlp()  # the same initial weights as the workload's model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    run = autoaccel.prepare(
        model, optimizer, data, loader_kwargs={"batch_size": 32, "shuffle": False}, config=config
    )
    lrs = []
    while run.optimizer_steps < 12:
        for x, y in run.loader:
            with run.autocast():
                loss = F.cross_entropy(run.model(x), y)
            run.backward(loss)
            if run.step():
                lrs.append(optimizer.param_groups[0]["lr"])
            if run.optimizer_steps == 12:
                break
    cosine = 0.5 + 0.5 * math.cos(math.pi / 17)  # one step into the 17 after warm-up
    assert lrs[:4] == pytest.approx([0.2 * 2 / 3, 0.2, 0.2, 0.2 * cosine])
    assert holdout.evaluate(run, workload.loss)[0] == pytest.approx(measured.final, rel=1e-5)


def test_a_diverging_candidate_is_a_finding_not_a_crash() -> None:
    workload, spec = workload_of(learnable(1024), batch_size=32)
    train, holdout = holdout_split(spec)
    config = TrainingConfig(batch_size=32, lr=1e6)
    run = train_for(workload, config, HeldOut(train, holdout), seconds=1.0, scoring=Scoring(2))
    assert run.outcome == "diverged" and "loss became" in run.message


def test_pruning_stops_a_candidate_between_evaluations() -> None:
    workload, spec = workload_of(learnable(1024), batch_size=32)
    train, holdout = holdout_split(spec)
    seen: list[tuple[int, CurvePoint]] = []

    def prune_at_two(k: int, point: CurvePoint) -> bool:
        seen.append((k, point))
        return k == 2

    run = train_for(
        workload,
        TrainingConfig(batch_size=32),
        HeldOut(train, holdout),
        seconds=0.8,
        scoring=Scoring(4),
        on_eval=prune_at_two,
    )
    assert run.outcome == "pruned" and [k for k, _ in seen] == [1, 2] and len(run.curve) == 2
    assert [p for _, p in seen] == list(run.curve)  # the pruner sees each evaluation
    assert run.curve[0].seconds < run.curve[1].seconds


def test_the_range_test_leaves_the_callers_model_alone() -> None:
    workload, spec = workload_of(learnable(2048), batch_size=32)
    before = {k: v.clone() for k, v in workload.model.state_dict().items()}
    lr_before = workload.optimizer.param_groups[0]["lr"]  # type: ignore[union-attr]
    finding = find_lr(workload, TrainingConfig(batch_size=32), spec, steps=80, max_s=30)
    assert finding.suggestion is not None and 1e-4 < finding.suggestion < 10
    assert finding.confidence == "high"
    after = workload.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert workload.optimizer.param_groups[0]["lr"] == lr_before  # type: ignore[union-attr]


def test_plateau_detection_needs_patience_and_a_tolerance() -> None:
    def curve(losses: list[float]) -> list[CurvePoint]:
        return [CurvePoint(float(i), 10 * i, v) for i, v in enumerate(losses)]

    flat = find_plateau(curve([2.0, 1.0, 0.6, 0.598, 0.597, 0.599, 0.6]))
    assert flat is not None and flat.step == 20 and flat.last_step == 60
    assert "improved by less than 1% over the next 3+ evaluations" in str(flat)
    assert find_plateau(curve([2.0, 1.5, 1.2, 1.0, 0.9, 0.8, 0.7])) is None
    assert find_plateau(curve([2.0, 1.0, 0.999])) is None  # too short to tell


def advise_with_validation(tmp_path: Path, **extra: object) -> autoaccel.Advice:
    """advise() on a small MLP with SGD at batch 16, a validation set and a 1.5 s horizon."""
    model = mlp()
    return advise(
        model,
        learnable(4096),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        loader_kwargs={"batch_size": 16},
        val_data=learnable(512),
        horizon_s=1.5,
        storage=str(tmp_path / "s.db"),
        seed=0,
        progress=False,
        **extra,  # type: ignore[arg-type]
    )


def test_advise_time_to_loss_picks_by_held_out_loss(tmp_path: Path) -> None:
    advice = advise_with_validation(tmp_path, budget_s=32)
    c = advice.convergence
    assert c is not None and c.holdout == "the validation set (512 samples)"
    assert c.finding is not None and c.runs
    done = [r for r in c.runs if r.ok]
    assert len(c.baseline.curve) == 12 and c.baseline.pace == pytest.approx(1.0)
    assert c.levels and [v.value for v in c.levels] == sorted(
        (v.value for v in c.levels), reverse=True
    )
    # The pick is the soonest of your setup and the finalists (each trained on more data
    # orders, its pace over all its runs); a run never trained again cannot be picked.
    finalists = [r for r in done if r.paces]
    assert c.best is c.baseline or c.best in finalists
    assert c.best.pace <= min([c.baseline.pace, *(r.pace for r in finalists)])
    for run in done:  # a finished candidate reached the lowest level, or used the horizon
        assert run.best_loss <= c.levels[-1].value or run.curve[-1].seconds >= 1.5 * 11 / 12
    config = advice.config
    if c.best is not c.baseline:
        assert config.lr == c.best.config.lr and config.schedule == c.best.config.schedule
        assert config.provenance.measured["heldout_loss"] == pytest.approx(c.best.final, rel=1e-3)
        assert c.check is not None and c.check.config == c.best.config
        assert c.speedup == c.check.speedup
    assert "Time to loss" in advice.summary(width=160)
    assert advice.to_dict()["convergence"]["horizon_s"] == 1.5


def test_unknown_objective_is_refused() -> None:
    with pytest.raises(UsageError, match="objective must be one of throughput, time-to-loss"):
        advise(mlp(), learnable(), objective="accuracy", progress=False)


def test_a_loss_that_is_nan_from_the_first_step_names_the_likely_cause() -> None:
    x, y = learnable(512)
    x[0, 0] = float("nan")  # one bad input poisons every batch that holds it
    with pytest.raises(UsageError, match="from the very first step, before any update"):
        advise(mlp(), (x, y), loader_kwargs={"batch_size": 512}, progress=False, budget_s=30)


def curve_of(*points: tuple[float, float]) -> tuple[CurvePoint, ...]:
    return tuple(CurvePoint(t, i, loss) for i, (t, loss) in enumerate(points))


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


def test_a_candidate_stops_once_it_reaches_the_loss_to_beat() -> None:
    workload, spec = workload_of(learnable(2048), batch_size=32)
    train, holdout = holdout_split(spec)
    config = TrainingConfig(batch_size=32)
    full = train_for(workload, config, HeldOut(train, holdout), seconds=1.2, scoring=Scoring(6))
    assert full.ok and full.start_loss is not None and full.start_loss > full.curve[0].loss
    goal = full.curve[2].loss * 1.2  # reached by the third evaluation, sooner if it learns faster
    early = train_for(
        workload,
        config,
        HeldOut(train, holdout),
        seconds=1.2,
        scoring=Scoring(6, stop_at=Level(goal, 1.0), start=(1.0, None)),
    )
    assert early.ok and early.final <= goal and len(early.curve) < 6
    assert "reached" in early.message and early.start_loss == 1.0


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (output.argmax(-1) == target).float().mean()


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
    assert final[0].paces == (0.5, 1.5, 2.0)  # against your times on each order
    assert final[0].pace == pytest.approx((0.5 * 1.5 * 2.0) ** (1 / 3))
    assert final[1].paces == pytest.approx((0.6, 0.6, 0.6)) and final[1].pace == pytest.approx(0.6)
    assert min(final, key=lambda r: r.pace).number == 4
    assert "final round" in said[0] and "2 other data orders" in said[0]
    assert said[-1] == "  #4 over 3 runs: 1.67x your pace"


def test_the_final_round_fits_its_share_of_the_budget() -> None:
    for budget, per_candidate in [(300, 10), (300, 20), (120, 5), (600, 30)]:
        finalists, orders = final_plan(budget, per_candidate)
        assert finalists >= 1 and orders * (finalists + 1) * per_candidate <= 0.3 * budget
    assert final_plan(300, 10) == (3, 2)  # room for the most
    assert final_plan(100, 20) == (0, 0)  # no room: the search's best is the pick


def test_advise_with_a_goal_ranks_by_the_time_to_it(tmp_path: Path) -> None:
    advice = advise_with_validation(tmp_path, metric=accuracy, target=0.6, budget_s=40)
    c = advice.convergence
    assert c is not None and c.aim == "accuracy 0.6 (your goal)"
    (level,) = c.levels
    assert level.metric and level.higher and 0 < level.seconds <= 1.5
    assert c.baseline.start_metric is not None and c.baseline.start_metric < 0.6
    assert all(p.metric is not None for p in c.baseline.curve)
    for run in c.runs:  # a candidate stopped at the goal, or when it ran out of time
        if run.ok and run.curve[-1].metric is not None and run.curve[-1].metric >= 0.6:
            assert "reached 0.6" in run.message
    finalists = [r for r in c.runs if r.paces]
    assert finalists and all(len(r.paces) >= 2 for r in finalists)  # its first run + others
    assert c.best is c.baseline or c.best in finalists
    if c.best is not c.baseline:
        assert advice.config.provenance.measured["target_metric"] == 0.6
    assert "accuracy 0.6 (your goal)" in advice.summary(width=200)


def test_bad_goals_are_refused_before_any_work() -> None:
    data, val = learnable(1024), learnable(256)
    with pytest.raises(UsageError, match="metric= needs target="):
        advise(mlp(), data, val_data=val, metric=accuracy, progress=False)
    with pytest.raises(UsageError, match="target= is for objective='time-to-loss'"):
        advise(mlp(), data, target=0.5, objective="throughput", progress=False)
    with pytest.raises(UsageError, match="the untrained model already scores"):
        advise(mlp(), data, val_data=val, target=50.0, progress=False)  # a loss above the start
    with pytest.raises(DataError, match="must give one number"):
        advise(mlp(), data, val_data=val, metric=lambda out, y: out, target=0.9, progress=False)
    with pytest.raises(DataError, match=r"metric\(output, target\) failed"):
        advise(mlp(), data, val_data=val, metric=lambda out, y: out @ y, target=0.9, progress=False)
