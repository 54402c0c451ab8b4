"""prepare()'s cost per step in a normal run, against the same loop written by hand.

Both loops train the same MLP with the same batch size, loader and precision; the only
difference is autoaccel's Run (its loader wrapper, autocast, backward and step). They are
timed interleaved in A B B A order (so neither always runs first) and the median ratio is
printed with its range; the script fails when the overhead is 1% or more.

    python bench/overhead.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import autoaccel
from autoaccel.config import TrainingConfig

ROUNDS = 8
STEPS = 1000


def data_and_model() -> tuple[TensorDataset, nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    x, y = torch.randn(STEPS * 64, 64), torch.randint(0, 10, (STEPS * 64,))
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    return TensorDataset(x, y), model, torch.optim.SGD(model.parameters(), lr=0.01)


def by_hand() -> float:
    dataset, model, optimizer = data_and_model()
    loader = DataLoader(dataset, batch_size=64, shuffle=True)
    start = time.perf_counter()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def with_prepare() -> float:
    dataset, model, optimizer = data_and_model()
    run = autoaccel.prepare(
        model,
        optimizer,
        dataset,
        loader_kwargs={"shuffle": True},
        config=TrainingConfig(batch_size=64),
    )
    start = time.perf_counter()
    for x, y in run.loader:
        with run.autocast():
            loss = F.cross_entropy(run.model(x), y)
        run.backward(loss)
        run.step()
    return time.perf_counter() - start


def main() -> None:
    by_hand(), with_prepare()  # warm both paths up
    ratios = []
    for i in range(ROUNDS):
        if i % 2 == 0:
            a, b = by_hand(), with_prepare()
        else:
            b, a = with_prepare(), by_hand()
        ratios.append(b / a)
    median = statistics.median(ratios)
    print(
        f"prepare() loop / hand-written loop, {STEPS} steps, {ROUNDS} interleaved rounds: "
        f"median {median:.4f} (min {min(ratios):.4f}, max {max(ratios):.4f}); "
        f"overhead {100 * (median - 1):+.2f}% per step"
    )
    sys.exit(0 if median < 1.01 else 1)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
