"""prepare()'s cost per step in a normal run, against the same loop written by hand.

For each workload, one model, one optimizer and one dataset serve two loops: the loop
written by hand (DataLoader, forward, backward, step, zero_grad) and the same loop through
``prepare()``'s Run (``run.loader``, ``run.autocast()``, ``run.backward``, ``run.step``).
They take turns in short blocks (A B, then B A, ...) so machine drift hits both alike; each
pair gives a ratio of time per step, and the median of the pair ratios is printed with its
bootstrap 95% interval.

Workloads: the reference workloads of ``bench/workloads.py`` (batch 64), and a worst case:
a 4x2 linear layer whose step is almost all Python, so the Run's fixed cost per step shows
in microseconds. The script exits 1 when, on a reference workload, the upper end of the
interval is 1% or more.

    python bench/overhead.py [--seconds 90]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))

from workloads import WORKLOADS

import autoaccel
from autoaccel.config import TrainingConfig

BATCH = 64
BLOCK = 2  # steps per block: short, so the two halves of a pair see the same machine
MAX_PAIRS = 3000


def tiny() -> tuple[nn.Module, Any, str]:
    torch.manual_seed(0)
    x, y = torch.randn(4096, 4), torch.randint(0, 2, (4096,))
    return nn.Linear(4, 2), (x, y), "Linear 4-2 (worst case: the step is mostly Python)"


def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.flatten(0, -2) if out.dim() > 2 else out, y.flatten())


def forever(batches: Callable[[], Any]) -> Iterator[Any]:
    """Epoch after epoch of the same loader (both loops pay the same for this)."""
    while True:
        yield from batches()


def loops(
    build: Callable[[], tuple[nn.Module, Any, str]],
) -> tuple[str, Callable[[], float], Callable[[], float]]:
    """(description, hand-written block, prepare() block); a block returns its seconds."""
    model, data, description = build()
    dataset = TensorDataset(*data) if isinstance(data, tuple) else data
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True)
    run = autoaccel.prepare(
        model,
        optimizer,
        dataset,
        loader_kwargs={"shuffle": True},
        config=TrainingConfig(batch_size=BATCH),
    )
    hand_batches = forever(lambda: loader)
    run_batches = forever(lambda: run.loader)

    def by_hand() -> float:
        start = time.perf_counter()
        for _ in range(BLOCK):
            x, y = next(hand_batches)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    def with_prepare() -> float:
        start = time.perf_counter()
        for _ in range(BLOCK):
            x, y = next(run_batches)
            with run.autocast():
                loss = loss_fn(run.model(x), y)
            run.backward(loss)
            run.step()
        return time.perf_counter() - start

    return description, by_hand, with_prepare


def paired(
    by_hand: Callable[[], float], with_prepare: Callable[[], float], seconds: float
) -> list[tuple[float, float]]:
    """(hand seconds, prepare seconds) per pair, the order alternating, for ``seconds``."""
    for _ in range(10):  # warm both up
        by_hand(), with_prepare()
    result: list[tuple[float, float]] = []
    end = time.perf_counter() + seconds
    for i in range(MAX_PAIRS):
        if time.perf_counter() > end:
            break
        if i % 2 == 0:
            a = by_hand()
            b = with_prepare()
        else:
            b = with_prepare()
            a = by_hand()
        result.append((a, b))
    return result


def median_interval(values: list[float], rounds: int = 2000) -> tuple[float, float, float]:
    """The median and its 95% percentile-bootstrap interval."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return statistics.median(values), medians[int(0.025 * rounds)], medians[int(0.975 * rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=90, help="time per workload (default 90)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the second core absorbs the machine's own noise
    print(
        f"prepare() loop / hand-written loop, time per step; batch {BATCH}; pairs of "
        f"{BLOCK}-step blocks, interleaved A B / B A, for {args.seconds:g} s per workload"
    )
    print(
        f"{'workload':<12} {'ms/step':>8} {'pairs':>6} {'median':>8} {'95% interval':>17} "
        f"{'us/step added':>14}"
    )
    worst = 0.0
    for name, build in {**WORKLOADS, "worst case": tiny}.items():
        description, by_hand, with_prepare = loops(build)
        result = paired(by_hand, with_prepare, args.seconds)
        median, low, high = median_interval([b / a for a, b in result])
        added = statistics.median(1e6 * (b - a) / BLOCK for a, b in result)
        step_ms = 1000 * statistics.median(a for a, _ in result) / BLOCK
        print(
            f"{name:<12} {step_ms:>8.3f} {len(result):>6} {median:>8.4f} {low:>8.4f}-{high:<8.4f} "
            f"{added:>+14.2f}   {description}"
        )
        if name != "worst case":
            worst = max(worst, high)
    verdict = "under" if worst < 1.01 else "NOT shown under"
    print(f"reference workloads: overhead {verdict} 1% at 95% (highest upper bound {worst:.4f})")
    sys.exit(0 if worst < 1.01 else 1)


if __name__ == "__main__":
    main()
