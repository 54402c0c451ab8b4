"""Do loader workers pay at your own batch on this machine? Fixed setups, measured alike.

The README's CNN and the Lightning example wait on their augmented images for about a
fifth of each step (the tunes' diagnosis: input-bound). A setup that keeps your batch,
split and precision learns as yours, so the guard writes it on its samples/s alone; the
search's guesses, though, try more workers only at the large batch. This bench measures,
at your batch with channels-last (the speed-only guess the tunes write here), 0, 1 and 2
loader workers on 2 and on 1 compute threads, each as a trial measures it (the script run
by ``ScriptRunner``, a steady-state window), interleaved round by round, so each round's
ratio to your own setup is side by side.

    python bench/workers_at_your_batch.py [--example train_lightning] [--rounds 4] [--window 4]
        [--only "cl, 1 threads, 2 workers" ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from autoaccel.config import TrainingConfig
from autoaccel.measure import MeterSettings
from autoaccel.probe import probe_system
from autoaccel.trials.script import ScriptRunner

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def setups() -> dict[str, TrainingConfig | None]:
    """Your setup, then your batch with channels-last and each worker and thread count."""
    found: dict[str, TrainingConfig | None] = {"yours": None}
    for threads in (2, 1):
        for workers in (0, 1, 2):
            found[f"cl, {threads} threads, {workers} workers"] = TrainingConfig(
                batch_size=32,
                device="cpu",
                channels_last=True,
                num_threads=threads,
                num_workers=workers,
                persistent_workers=workers > 0,
            )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", default="train_lightning", help="a script in examples/")
    parser.add_argument("--rounds", type=int, default=4, help="measurements of each setup")
    parser.add_argument("--window", type=float, default=4.0, help="steady-state seconds")
    parser.add_argument(
        "--only", nargs="+", default=None, metavar="SETUP", help="these setups beside yours"
    )
    args = parser.parse_args()
    picks = setups()
    if args.only:
        unknown = sorted(set(args.only) - set(picks))
        if unknown:
            parser.error(f"no setup named {unknown[0]!r}; the setups: {', '.join(picks)}")
        picks = {label: picks[label] for label in ("yours", *args.only)}
    print(f"# {probe_system().describe()}; pid {os.getpid()}", flush=True)
    runner = ScriptRunner(
        EXAMPLES / f"{args.example}.py",
        (),
        trials_dir=Path(tempfile.mkdtemp(prefix="workers-at-your-batch-")),
        settings=MeterSettings(window_s=args.window),
        timeout_s=180,
    )
    rates: dict[str, list[float]] = {label: [] for label in picks}
    waits: dict[str, list[float]] = {label: [] for label in picks}
    for round_ in range(args.rounds):
        for label, config in picks.items():
            trial = runner.run(config)
            if not trial.measurement.ok:
                raise SystemExit(f"{label}: the trial failed:\n{trial.log_tail()}")
            rates[label].append(trial.measurement.samples_per_s)
            waits[label].append(trial.measurement.data_wait_fraction)
        shown = ", ".join(
            f"{label} {rates[label][-1] / rates['yours'][-1]:.2f}x" for label in picks
        )
        print(f"  round {round_}: {shown}", flush=True)
    print(f"{args.example}: {args.rounds} rounds, {args.window:g} s windows, batch 32")
    print(f"  {'setup':>28}  {'samples/s':>9}  {'data wait':>9}  ratio to yours (median, range)")
    for label in picks:
        ratios = [r / y for r, y in zip(rates[label], rates["yours"], strict=True)]
        print(
            f"  {label:>28}  {statistics.median(rates[label]):9,.0f}"
            f"  {statistics.median(waits[label]):9.0%}  {statistics.median(ratios):.2f}x"
            f" ({min(ratios):.2f}-{max(ratios):.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
