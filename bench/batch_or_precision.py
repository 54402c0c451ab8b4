"""Does a bigger batch that runs faster reach the target sooner? Fixed setups, timed alike.

The guard writes, of the setups that keep pace with yours on the trials' curves, the one
that reaches your levels soonest (``autoaccel.pipeline.guard.soonest_standing``), not the
one with the most samples/s. This bench is the evidence for that rule on the
time-to-accuracy bench's CNN: it times fixed setups, with no tune in between, exactly as
``bench/tune_time_to_accuracy.py`` times the tunes' picks (``autoaccel run`` with the config,
``time_to_accuracy.train_until``, the same data orders, interleaved per order):

- **default**: the script's own settings (batch 32, AdamW lr 1e-3, fp32);
- **batch 32 bf16 cl**: your batch in bf16 with channels-last (the tunes measure it ~1.45x
  your samples/s);
- **batch 64 bf16 cl**: twice the batch, as the trials ran it (your LR; ~1.8x samples/s);
- **batch 64 bf16 cl, sqrt lr**: with the LR rule a check run applies (x sqrt 2), no warm-up;
- **batch 64 bf16 cl, sqrt lr, warm-up**: with the rule's warm-up too (one epoch of steps).

It prints each setup's median seconds to the target, its ratio to the default's and on how
many orders it was sooner and later.

    python bench/batch_or_precision.py [--workload cnn] [--seeds 9] [--eval-every-samples 320]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
from pathlib import Path

from time_to_accuracy import TARGETS, USER_BATCH, eval_every_argument, split
from tune_time_to_accuracy import sooner_later, time_to_target
from workloads import WORKLOADS

from autoaccel.config import TrainingConfig
from autoaccel.probe import probe_system


def setups(name: str) -> dict[str, TrainingConfig]:
    """The fixed setups, on 2 threads as the tunes' picks run here."""
    fast = {"device": "cpu", "num_threads": 2, "precision": "bf16-mixed", "channels_last": True}
    warmup = len(split(WORKLOADS[name]()[1])[0]) // (2 * USER_BATCH)  # lr_follows_batch's
    return {
        "default": TrainingConfig(batch_size=USER_BATCH, num_threads=2),
        "batch 32 bf16 cl": TrainingConfig(batch_size=USER_BATCH, **fast),  # type: ignore[arg-type]
        "batch 64 bf16 cl": TrainingConfig(batch_size=2 * USER_BATCH, **fast),  # type: ignore[arg-type]
        "batch 64 bf16 cl, sqrt lr": TrainingConfig(
            batch_size=2 * USER_BATCH,
            lr_scaling="sqrt",
            **fast,  # type: ignore[arg-type]
        ),
        "batch 64 bf16 cl, sqrt lr, warm-up": TrainingConfig(
            batch_size=2 * USER_BATCH,
            lr_scaling="sqrt",
            warmup_steps=warmup,
            **fast,  # type: ignore[arg-type]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="cnn", choices=sorted(TARGETS))
    parser.add_argument("--seeds", type=int, default=9, help="data orders each setup trains on")
    eval_every_argument(parser)
    args = parser.parse_args()
    print(f"# {probe_system().describe()}; pid {os.getpid()}", flush=True)
    name, target = args.workload, TARGETS[args.workload][0]
    picks = setups(name)
    work = Path(tempfile.mkdtemp(prefix="batch-or-precision-"))
    times: dict[str, list[float]] = {label: [] for label in picks}
    for seed in range(args.seeds):
        for label, config in picks.items():
            took, _, _ = time_to_target(
                name, label, config, target, seed, work, args.eval_every_samples
            )
            times[label].append(took if took is not None else math.inf)
        shown = ", ".join(f"{label} {ts[-1]:.2f} s" for label, ts in times.items())
        print(f"  order {seed}: {shown}", flush=True)
    base = times["default"]
    print(f"{name}: to {target:.0%} validation accuracy, {args.seeds} data orders")
    print(f"  {'setup':>36}  {'median s':>8}  {'vs default':>10}  sooner / later")
    for label, ts in times.items():
        median = statistics.median(ts)
        sooner, later = sooner_later(ts, base)
        ratio = statistics.median(base) / median
        print(f"  {label:>36}  {median:8.2f}  {ratio:9.2f}x  {sooner:>6} / {later}", flush=True)


if __name__ == "__main__":
    main()
