"""The throughput pick's convergence guard, on a real model trained in-process."""

from __future__ import annotations

import torch
from models import learnable, mlp

from autoaccel.config import TrainingConfig
from autoaccel.pipeline import PipelineOptions, objective_line
from autoaccel.runtime.data import describe_data
from autoaccel.states import Objective
from autoaccel.time_to_loss import HeldOut, InProcessTrainer, holdout_split
from autoaccel.time_to_loss.guard import GuardVerdict, check_convergence
from autoaccel.trials.workload import make_workload

USER = TrainingConfig(batch_size=32, num_threads=1)


def trainer(*, held_out: bool) -> InProcessTrainer:
    model = mlp()
    spec = describe_data(learnable(2048), loader_kwargs={"batch_size": 32, "shuffle": True})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    workload = make_workload(model, spec, loss_fn=None, optimizer=optimizer)
    if held_out:
        return InProcessTrainer(workload, HeldOut(*holdout_split(spec, learnable(256))))
    return InProcessTrainer(workload, HeldOut(spec, None))


def test_a_pick_that_learns_more_slowly_is_refused_on_the_training_loss() -> None:
    slow = TrainingConfig(batch_size=32, num_threads=1, lr=1e-5)  # barely moves
    verdict = check_convergence(trainer(held_out=False), slow, USER, horizon_s=1.5, held_out=False)
    assert not verdict.kept
    assert verdict.how == "guarded"
    assert verdict.pace is not None and verdict.pace > 1
    assert "training loss fell behind yours: it reached" in verdict.line
    assert verdict.worst is not None and verdict.worst > 1.1
    assert verdict.line.endswith("your global batch is kept")


def test_a_pick_that_diverges_is_refused_saying_so() -> None:
    wild = TrainingConfig(batch_size=32, num_threads=1, lr=100.0)
    verdict = check_convergence(trainer(held_out=False), wild, USER, horizon_s=1.0, held_out=False)
    assert not verdict.kept
    assert "it diverged (the loss became" in verdict.line


def test_a_pick_that_learns_sooner_is_kept_and_measured_on_held_out_data() -> None:
    brisk = TrainingConfig(batch_size=32, num_threads=1, lr=0.5)  # 10x yours, still stable
    verdict = check_convergence(trainer(held_out=True), brisk, USER, horizon_s=1.5, held_out=True)
    assert verdict.kept, verdict.line
    assert verdict.how == "measured"
    assert "held-out loss kept pace with yours" in verdict.line
    assert verdict.yours is not None and verdict.pick is not None
    # Both curves start at the untrained model's held-out loss: the same weights.
    assert verdict.pick.start_loss == verdict.yours.start_loss


def test_the_objective_line_says_what_chose_the_pick_and_how_convergence_was_checked() -> None:
    throughput = PipelineOptions()
    guarded = GuardVerdict(False, "guarded", "its training loss fell more slowly", 1.4)
    assert objective_line(throughput, guarded) == (
        "throughput (samples/s); convergence guarded by the training loss: its training "
        "loss fell more slowly"
    )
    kept = GuardVerdict(True, "unchanged", "the pick keeps your global batch (32)")
    assert "convergence not affected" in objective_line(throughput, kept)
    assert objective_line(PipelineOptions(keep_global_batch=True), None).endswith("kept as asked")
    ttl = PipelineOptions(objective=Objective.TIME_TO_LOSS)
    assert objective_line(ttl, None).startswith("time-to-loss")
