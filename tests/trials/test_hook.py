"""The script's evaluate hook: how it is called and how its value is read."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from autoaccel.errors import DataError, UsageError
from autoaccel.trials.hook import call_hook, check_hook, read_values


def test_a_number_or_a_dict_with_the_loss_is_read() -> None:
    assert read_values(0.25, None) == (0.25, None)
    assert read_values(torch.tensor(0.5), None) == (0.5, None)
    assert read_values({"loss": 1, "accuracy": torch.tensor(0.75)}, "accuracy") == (1.0, 0.75)
    assert read_values({"loss": 1.0, "accuracy": 0.5}, None) == (1.0, None)


@pytest.mark.parametrize(
    ("value", "metric", "match"),
    [
        ("0.5", None, r"must return the held-out loss as a number .* was str '0.5'"),
        (None, None, r"the value was NoneType"),
        (True, None, r"was bool"),
        (torch.ones(3), None, r"was Tensor"),
        ({"val": 0.5}, None, r"returned a dict without 'loss' \(keys: val\)"),
        ({"loss": 0.5}, "accuracy", r"--metric accuracy: evaluate\(\) returned no 'accuracy'"),
        (0.5, "accuracy", r"--metric accuracy: evaluate\(\) returned one number"),
        ({"loss": 0.5, "accuracy": "high"}, "accuracy", r"'accuracy' was str"),
    ],
)
def test_anything_else_is_refused_naming_the_fix(
    value: object, metric: str | None, match: str
) -> None:
    with pytest.raises(DataError, match=match):
        read_values(value, metric)


def test_nan_is_read_as_nan_for_the_caller_to_judge() -> None:
    loss, _ = read_values(float("nan"), None)
    assert loss != loss


def test_the_hook_runs_in_eval_mode_without_gradients_and_the_mode_is_restored() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    seen = {}

    def evaluate() -> float:
        seen["training"] = model.training
        seen["grad"] = torch.is_grad_enabled()
        return 0.5

    model.train()
    assert call_hook(evaluate, model, None) == (0.5, None)
    assert seen == {"training": False, "grad": False}
    assert model.training
    model.eval()
    call_hook(evaluate, model, None)
    assert not model.training


def test_a_hook_that_raises_is_a_data_error_naming_it() -> None:
    model = nn.Linear(2, 2)

    def evaluate() -> float:
        raise KeyError("val_loader")

    with pytest.raises(DataError, match=r"evaluate\(\) raised KeyError: 'val_loader'"):
        call_hook(evaluate, model, None)
    assert model.training  # restored even so


def test_prepare_refuses_a_hook_that_cannot_be_called() -> None:
    assert check_hook(None) is None
    with pytest.raises(UsageError, match=r"evaluate must be a function .* got float 0.5"):
        check_hook(0.5)


def test_the_hook_gives_back_the_random_draws_it_made() -> None:
    """A hook that iterates a DataLoader (which seeds itself from torch's RNG) or draws
    itself leaves the RNGs as they were: the training's next draws (its shuffle, its dropout)
    do not depend on whether the clock called an evaluation."""
    model = nn.Linear(2, 2)

    def evaluate() -> float:
        list(torch.utils.data.DataLoader(range(8), batch_size=4))
        return float(torch.rand(1)) + random.random() + float(np.random.rand())

    def draws() -> tuple[list[float], float, float]:
        return torch.rand(3).tolist(), random.random(), float(np.random.rand())

    for rng in (torch.manual_seed, random.seed, np.random.seed):
        rng(0)
    call_hook(evaluate, model, None)
    after_a_call = draws()
    for rng in (torch.manual_seed, random.seed, np.random.seed):
        rng(0)
    assert draws() == after_a_call
