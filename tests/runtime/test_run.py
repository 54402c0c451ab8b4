"""The prepared run: accumulation, channels-last, autocast, a run without data."""

from __future__ import annotations

import pytest
import torch
from models import Pairs, TinyConv, mlp, tabular
from torch import nn

from autoaccel.config import TrainingConfig
from autoaccel.errors import DataError
from autoaccel.runtime.data import build_loader, describe_data
from autoaccel.runtime.run import Run


def test_gradient_accumulation_matches_the_full_batch() -> None:
    x, y = tabular(16)
    full, accum = mlp(), mlp()
    accum.load_state_dict(full.state_dict())
    loss_fn = nn.CrossEntropyLoss()
    opt_full = torch.optim.SGD(full.parameters(), lr=0.1)
    loss_fn(full(x), y).backward()
    opt_full.step()
    run = Run(
        accum,
        torch.optim.SGD(accum.parameters(), lr=0.1),
        TrainingConfig(batch_size=8, grad_accum_steps=2),
    )
    stepped = []
    for half in (slice(0, 8), slice(8, 16)):
        run.backward(loss_fn(run.model(x[half]), y[half]))
        stepped.append(run.step())
    assert stepped == [False, True] and run.optimizer_steps == 1
    for a, b in zip(full.parameters(), accum.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_channels_last_and_bf16_autocast() -> None:
    model = TinyConv()
    run = Run(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        TrainingConfig(channels_last=True, precision="bf16-mixed"),
        loader=build_loader(describe_data(Pairs(8)), TrainingConfig(batch_size=4)),
    )
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    x, _ = next(iter(run.loader))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with run.autocast():
        out = run.model(x)
    assert out.dtype == torch.bfloat16


def test_a_run_without_data_has_no_loader() -> None:
    model = mlp()
    run = Run(model, torch.optim.SGD(model.parameters(), lr=0.1), TrainingConfig())
    with pytest.raises(DataError, match="prepared without data"):
        next(iter(run.loader))
