"""Training runs scored on held-out data, and the LR range test, on fresh copies."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from models import learnable, mlp

import autoaccel
from autoaccel.config import TrainingConfig
from autoaccel.runtime.data import describe_data
from autoaccel.time_to_loss import (
    CurvePoint,
    HeldOut,
    Level,
    Scoring,
    find_lr,
    holdout_split,
    train_for,
)
from autoaccel.trials.workload import make_workload


def workload_of(data: tuple[torch.Tensor, torch.Tensor], **loader: object):  # type: ignore[no-untyped-def]
    model = mlp()
    spec = describe_data(data, loader_kwargs=loader)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return make_workload(model, spec, loss_fn=None, optimizer=optimizer), spec


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
    config = TrainingConfig(batch_size=32, lr=100.0)  # the largest lr a config may hold
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


def test_a_candidate_stops_once_it_reaches_the_loss_to_beat() -> None:
    workload, spec = workload_of(learnable(2048), batch_size=32)
    train, holdout = holdout_split(spec)
    config = TrainingConfig(batch_size=32)
    full = train_for(workload, config, HeldOut(train, holdout), seconds=1.2, scoring=Scoring(6))
    assert full.ok and full.start_loss is not None and full.start_loss > full.curve[0].loss
    # Halfway down from the start: reached early on (most of the drop comes first), by the
    # second run too even on a busier machine, which fits fewer steps in each 0.2 s.
    goal = full.start_loss - 0.5 * (full.start_loss - full.final)
    early = train_for(
        workload,
        config,
        HeldOut(train, holdout),
        seconds=1.2,
        scoring=Scoring(6, stop_at=Level(goal, 1.0), start=(1.0, None)),
    )
    assert early.ok and early.final <= goal and len(early.curve) < 6
    assert "reached" in early.message and early.start_loss == 1.0


def test_scoring_the_holdout_leaves_the_training_draws_as_they_were() -> None:
    """Each evaluation iterates a DataLoader, which seeds itself from torch's RNG: given
    back, the training's next shuffle does not depend on how many evaluations the clock
    called."""
    data = learnable(256)
    workload, spec = workload_of(data, batch_size=32, shuffle=True)
    _, holdout = holdout_split(spec, learnable(64))
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    run = autoaccel.prepare(
        model, optimizer, data, loader_kwargs={"batch_size": 32, "shuffle": True}
    )
    torch.manual_seed(0)
    holdout.evaluate(run, workload.loss)
    order_after_a_score = [y.tolist() for _, y in run.loader]
    torch.manual_seed(0)
    assert [y.tolist() for _, y in run.loader] == order_after_a_score
