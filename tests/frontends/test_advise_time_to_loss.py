"""advise() with held-out data: the soonest to a good model, and goals it refuses."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import pytest
import torch
from models import FAST, accuracy, learnable, mlp

import autoaccel
from autoaccel.errors import DataError, UsageError
from autoaccel.frontends.advise import advise


def advise_with_validation(tmp_path: Path, **extra: object) -> autoaccel.Advice:
    """advise() on a small MLP with SGD at batch 16, a validation set and a 1.5 s horizon;
    short throughput trials (``FAST``), as the schedule study is what these tests check."""
    model = mlp()
    return advise(
        model,
        learnable(4096),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        loader_kwargs={"batch_size": 16},
        val_data=learnable(512),
        horizon_s=1.5,
        settings=FAST,
        storage=str(tmp_path / "s.db"),
        seed=0,
        progress=False,
        **extra,  # type: ignore[arg-type]
    )


@pytest.mark.slow
def test_advise_time_to_loss_picks_by_held_out_loss(tmp_path: Path) -> None:
    advice = advise_with_validation(tmp_path, budget_s=28)  # room for candidates when busy
    c = advice.convergence
    assert c is not None and c.holdout == "the validation set (512 samples)"
    assert c.finding is not None and c.runs
    done = [r for r in c.runs if r.ok]
    assert len(c.baseline.curve) == 12 and c.baseline.pace == pytest.approx(1.0)
    assert c.levels and [v.value for v in c.levels] == sorted(
        (v.value for v in c.levels), reverse=True
    )
    # The pick is the soonest of your setup and the finalists (each trained on more data
    # orders, its pace over those runs); a run never trained again cannot be picked,
    # unless the budget left no final round (a slow or busy machine): then the runs stand.
    pool = [r for r in done if r.paces] or done
    assert c.best is c.baseline or c.best in pool
    assert c.best.pace <= min([c.baseline.pace, *(r.pace for r in pool)])
    for run in done:  # a finished candidate reached the lowest level, or used the horizon
        assert run.best_loss <= c.levels[-1].value or run.curve[-1].seconds >= 1.5 * 11 / 12
    config = advice.config
    if c.best is not c.baseline:
        assert config.lr == c.best.config.lr and config.schedule == c.best.config.schedule
        assert config.provenance.measured["heldout_loss"] == pytest.approx(c.best.final, rel=1e-3)
        assert c.check is not None and c.check.config == c.best.config
        # told over its runs after the search (the final round's and the check's)
        assert c.after_search and c.after_search[-1] == c.check.pace
        assert c.speedup == pytest.approx(1 / statistics.geometric_mean(c.after_search))
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


@pytest.mark.slow
def test_advise_with_a_goal_ranks_by_the_time_to_it(tmp_path: Path) -> None:
    advice = advise_with_validation(tmp_path, metric=accuracy, target=0.4, budget_s=22)
    c = advice.convergence
    assert c is not None and c.aim == "accuracy 0.4 (your goal)"
    (level,) = c.levels
    assert level.metric and level.higher and 0 < level.seconds <= 1.5
    # Your time to the goal: the geometric mean over two data orders, both named.
    (note,) = [n for n in c.notes if n.startswith("your time to accuracy 0.4")]
    times = [float(t) for t in re.findall(r"([\d.]+) s", note)]
    assert "over 2 data orders" in note and len(times) == 2
    assert level.seconds == pytest.approx(math.sqrt(times[0] * times[1]), abs=0.06)
    assert c.baseline.start_metric is not None and c.baseline.start_metric < 0.4
    assert all(p.metric is not None for p in c.baseline.curve)
    for run in c.runs:  # a candidate stopped at the goal, or when it ran out of time
        if run.ok and run.curve[-1].metric is not None and run.curve[-1].metric >= 0.4:
            assert "reached 0.4" in run.message
    # Finalists trained on other data orders too (their pace over those runs alone); a busy
    # machine's budget can leave no final round, and then the runs stand (as above).
    finalists = [r for r in c.runs if r.paces]
    assert all(r.pace == pytest.approx(math.prod(r.paces) ** (1 / len(r.paces))) for r in finalists)
    assert c.best is c.baseline or c.best in (finalists or [r for r in c.runs if r.ok])
    if c.best is not c.baseline:
        assert advice.config.provenance.measured["target_metric"] == 0.4
    assert "accuracy 0.4 (your goal)" in advice.summary(width=200)


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
