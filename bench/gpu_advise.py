"""On a GPU machine: does `advise()` with the model left on the CPU pick a setup within 0.9x
of the best of a small grid measured on the GPU? (issue 32's target)

The model and data are the bundled image classifier's (examples/train_cnn.py). advise()
gets the model as the script leaves it, on the CPU; then a small grid (batch x precision,
channels-last, pinned memory, 4 loader workers) is measured on the GPU in-process, and the
pick is measured again between the grid's rounds, so the ratio is one run's, side by side.

    python bench/gpu_advise.py [--budget 60]

Without a GPU it says so and exits 0 (nothing to measure).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

from train_cnn import AugmentedImages, make_model  # noqa: E402

from autoaccel.config import TrainingConfig  # noqa: E402
from autoaccel.frontends.advise import advise  # noqa: E402
from autoaccel.measure import MeterSettings  # noqa: E402
from autoaccel.runtime.data import describe_data  # noqa: E402
from autoaccel.trials.in_process import run_trial  # noqa: E402
from autoaccel.trials.workload import make_workload  # noqa: E402

LOADER = {"batch_size": 32, "shuffle": True}
ROUNDS = 3


def sgd(params: object) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)  # type: ignore[arg-type]


def grid() -> list[TrainingConfig]:
    base = TrainingConfig(device="cuda", channels_last=True, pin_memory=True, num_workers=4)
    base = replace(base, persistent_workers=True, prefetch_factor=2)
    return [
        replace(base, batch_size=batch, precision=precision)
        for batch in (64, 256, 1024)
        for precision in ("32-true", "bf16-mixed")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="advise()'s budget, seconds")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_advise: no GPU here; nothing to measure")
        return
    print(f"gpu_advise: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    torch.manual_seed(0)
    started = time.monotonic()
    advice = advise(
        make_model(),  # left on the CPU, as the script leaves it
        AugmentedImages(16384),
        loader_kwargs=LOADER,
        optimizer=sgd,
        budget_s=args.budget,
        storage=str(Path(tempfile.mkdtemp()) / "advise.db"),
        seed=0,
        progress=False,
    )
    print(f"advise: {time.monotonic() - started:.0f} s; pick: {advice.config.knobs()}")
    print(f"advise: speedup over your setup on the CPU: {advice.speedup}")
    workload = make_workload(
        make_model(),
        describe_data(AugmentedImages(16384), loader_kwargs=LOADER),
        loss_fn=None,
        optimizer=sgd,
    )
    settings = MeterSettings()
    candidates = [advice.config, *grid()]
    rates: list[list[float]] = [[] for _ in candidates]
    for _ in range(ROUNDS):  # interleaved: drift hits every candidate alike
        for i, config in enumerate(candidates):
            measured = run_trial(workload, config, settings)
            rates[i].append(measured.samples_per_s if measured.ok else 0.0)
    medians = [statistics.median(r) for r in rates]
    for config, median in zip(candidates[1:], medians[1:], strict=True):
        rate = f"{median:12,.0f} samples/s"
        print(f"grid: batch {config.batch_size:5d} {config.precision:10s} {rate}")
    best = max(medians[1:])
    print(f"pick: {medians[0]:,.0f} samples/s; best of the grid: {best:,.0f}")
    print(f"RATIO pick / best of grid = {medians[0] / best:.2f} (target >= 0.90)")
    print(f"pick trained on: {advice.config.device}")


if __name__ == "__main__":
    main()
