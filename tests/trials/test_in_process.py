from __future__ import annotations

import psutil
import pytest
import torch
import torch.nn.functional as F
from models import FAST, OutOfMemoryAbove, Pairs, mlp, tabular
from torch import nn

from autoaccel.config import TrainingConfig
from autoaccel.errors import DataError
from autoaccel.runtime.data import describe_data
from autoaccel.trials.in_process import run_trial
from autoaccel.trials.workload import make_workload


class ReturnsLoss(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(x)
        return logits, F.cross_entropy(logits, y)


def test_cross_entropy_is_inferred_for_integer_targets() -> None:
    workload = make_workload(mlp(), describe_data(tabular()), loss_fn=None, optimizer=None)
    assert workload.loss.mode == "cross_entropy"


def test_a_model_that_returns_its_loss() -> None:
    workload = make_workload(ReturnsLoss(), describe_data(tabular()), loss_fn=None, optimizer=None)
    assert workload.loss.mode == "model"
    assert run_trial(workload, TrainingConfig(batch_size=32), FAST).ok


def test_ambiguous_loss_needs_loss_fn() -> None:
    x = torch.randn(64, 16)
    with pytest.raises(
        DataError,
        match=r"cannot tell which loss to use for model output "
        r"\(4, 4\) and target \(4, 4\); pass loss_fn=",
    ):
        make_workload(mlp(), describe_data((x, torch.randn(64, 4))), loss_fn=None, optimizer=None)
    workload = make_workload(
        mlp(), describe_data((x, torch.randn(64, 4))), loss_fn=F.mse_loss, optimizer=None
    )
    assert workload.loss.mode == "loss_fn"


def test_shapes_that_do_not_fit_name_the_call_and_shapes() -> None:
    x, y = tabular(inputs=10)
    with pytest.raises(
        DataError,
        match=r"model\(\*inputs\) failed for batch shapes "
        r"\[\(4, 10\), \(4,\)\]: mat1 and mat2",
    ):
        make_workload(mlp(inputs=16), describe_data((x, y)), loss_fn=None, optimizer=None)


def test_data_on_another_device_than_the_model() -> None:
    x, y = torch.randn(8, 16, device="meta"), torch.zeros(8, dtype=torch.long, device="meta")
    with pytest.raises(DataError, match=r"the data is on meta but the model is on cpu"):
        make_workload(mlp(), describe_data((x, y)), loss_fn=None, optimizer=None)


def test_an_optimizer_over_other_parameters() -> None:
    other = nn.Linear(2, 2)
    with pytest.raises(DataError, match="parameters that are not the model's"):
        make_workload(
            mlp(),
            describe_data(tabular()),
            loss_fn=None,
            optimizer=torch.optim.SGD(other.parameters(), lr=0.1),
        )


def test_a_trial_measures_real_steps() -> None:
    workload = make_workload(mlp(), describe_data(tabular()), loss_fn=None, optimizer=None)
    m = run_trial(workload, TrainingConfig(batch_size=16), FAST)
    assert m.ok and m.samples_per_s > 0 and m.window_steps >= 3
    assert m.losses and m.peak_memory_bytes and m.memory_kind == "rss"


def test_out_of_memory_is_a_finding_not_a_crash() -> None:
    x, y = tabular()
    workload = make_workload(
        OutOfMemoryAbove(64), describe_data((x, y)), loss_fn=None, optimizer=None
    )
    assert run_trial(workload, TrainingConfig(batch_size=64), FAST).ok
    m = run_trial(workload, TrainingConfig(batch_size=128), FAST)
    assert m.outcome == "oom" and "can't allocate memory" in m.message


def test_divergence_is_a_finding() -> None:
    x = torch.randn(256, 16) * 100
    target = torch.randn(256, 4) * 100
    workload = make_workload(
        mlp(),
        describe_data((x, target)),
        loss_fn=F.mse_loss,
        optimizer=lambda params: torch.optim.SGD(params, lr=1e6),
    )
    m = run_trial(workload, TrainingConfig(batch_size=32), FAST)
    assert m.outcome == "diverged" and "diverged" in m.message


def test_a_crash_in_the_loader_is_an_error_outcome() -> None:
    class Broken(Pairs):
        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            if i >= 8:
                raise KeyError(f"sample {i} is missing")
            return super().__getitem__(i)

    from models import TinyConv

    workload = make_workload(
        TinyConv(),
        describe_data(Broken(64), loader_kwargs={"batch_size": 4}),
        loss_fn=None,
        optimizer=None,
    )
    m = run_trial(workload, TrainingConfig(batch_size=16), FAST)
    assert m.outcome == "error" and "KeyError" in m.message


def test_trials_never_touch_the_callers_model_or_optimizer() -> None:
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    workload = make_workload(model, describe_data(tabular()), loss_fn=None, optimizer=optimizer)
    assert run_trial(workload, TrainingConfig(batch_size=16), FAST).ok
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert optimizer.state == {}


@pytest.mark.parametrize("stopped", [True, False])
def test_a_trial_leaves_no_loader_worker_behind(stopped: bool) -> None:
    """A stopped trial's traceback holds its loader: kept past the trial, its workers would
    compete with every later trial for the cores (10-20x slower trials, seen once)."""
    workload = make_workload(mlp(), describe_data(tabular(1024)), loss_fn=None, optimizer=None)
    config = TrainingConfig(batch_size=32, num_workers=2, persistent_workers=True)

    def prune(done: float, running: float) -> bool:
        return stopped

    measured = run_trial(workload, config, FAST, prune=prune)
    assert measured.outcome == ("pruned" if stopped else "ok"), measured.message
    assert psutil.Process().children(recursive=True) == []
