"""Time to a stated validation accuracy, each reference workload tuned *as a script*.

For each workload (``bench/tta_script.py``, the same setup as ``bench/time_to_accuracy.py``):

- **default**: the script's own settings (batch 32, AdamW lr 1e-3, constant LR);
- **throughput-only**: the fastest setup the throughput search measured, with its
  unmeasured LR rule, as ``autoaccel tune`` wrote it before the guard (the first pick the
  guard checks; in runs -b to -f of 2026-12-06/07 this row shows the setup the guard kept);
- **guarded default**: ``autoaccel tune`` with its defaults on the script *without* a hook:
  the throughput objective, the pick kept only if its training loss keeps pace;
- **time-to-loss**: ``autoaccel tune --objective time-to-loss --target T --metric accuracy``
  on the script *with* its ``evaluate`` hook.

Each pick then trains from the same initial weights, started by ``autoaccel run`` with its
config (under torchrun when it asks for several processes), in the same loop until the
validation accuracy reaches the target (``time_to_accuracy.train_until``, evaluated every
``--eval-every-samples`` samples trained, on rank 0; training time counted, start-up and
evaluations not), ``--seeds`` times
each with its own data order, interleaved (default, throughput-only, guarded, time-to-loss,
then the next seed); the table prints each pick's median seconds to the target, its ratio
to the default's, on how many orders it was sooner and later than the default, and on how
many it crossed at the default's samples (the same step: the same training).

Every pick reaches its target in 1-4 s of training here, so both defaults are sized to
tell such picks apart: 9 data orders (at 3, one config measured 0.89x and 1.67x in two runs)
and an evaluation every 320 samples (ten of the default's batches, ~0.1 s of its training).
Evaluations were once timed (every 0.1 s of training): then two runs of one setup evaluated
after different steps, and one setup timed twice read 0.80 s and 1.61 s on one order. Counted
in samples, runs with the same steps evaluate after the same steps, and the table's samples
column shows where each crossed. The tunes, not the training runs, take most of the bench's
~35 minutes.

    python bench/tune_time_to_accuracy.py [--workloads cnn transformer] [--seeds 9]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).parent))

from time_to_accuracy import (
    CAP_S,
    EVAL_EVERY_SAMPLES,
    TARGETS,
    USER_BATCH,
    eval_every_argument,
    split,
)
from workloads import WORKLOADS

from autoaccel.advice import lr_follows_batch
from autoaccel.budget import TUNE_BUDGET_S, TUNE_TTL_BUDGET_S
from autoaccel.config import Provenance, TrainingConfig, save_config
from autoaccel.frontends.script import tune_script
from autoaccel.pipeline import TUNE, PipelineOptions
from autoaccel.probe import probe_system
from autoaccel.search.space import WorkloadFacts

SCRIPT = Path(__file__).parent / "tta_script.py"


def tune(name: str, work: Path, *, hook: bool, **kwargs: Any) -> tuple[Any, float]:
    """``autoaccel tune`` on the workload's script; (advice, wall seconds)."""
    args = ("--workload", name) + (() if hook else ("--no-hook",))
    started = time.monotonic()
    options = PipelineOptions.checked(TUNE, storage=str(work / "s.db"), seed=0, **kwargs)
    result = tune_script(
        SCRIPT,
        args,
        options,
        out=work / f"{name}-{'hook' if hook else 'nohook'}-{kwargs.get('objective', 'tp')}.yaml",
        console=Console(stderr=True, width=200),  # the tune's progress, apart from the figures
    )
    return result.advice, time.monotonic() - started


def time_to_target(
    name: str,
    label: str,
    config: TrainingConfig,
    target: float,
    seed: int,
    work: Path,
    every_samples: int = EVAL_EVERY_SAMPLES,
) -> tuple[float | None, int | None, float]:
    """``autoaccel run`` with the pick's config: training seconds and samples to ``target``
    (None: not within the cap) and the best validation accuracy, as rank 0 wrote them."""
    stem = work / f"{name}-{label.replace(' ', '-')}"
    save_config(config, stem.with_suffix(".yaml"))
    result = stem.with_suffix(".json")
    result.unlink(missing_ok=True)
    command = [sys.executable, "-m", "autoaccel.cli", "run", "--config", str(stem) + ".yaml"]
    command += [str(SCRIPT), "--", "--workload", name, "--to-target", str(target)]
    command += ["--seed", str(seed), "--result", str(result)]
    command += ["--eval-every-samples", str(every_samples)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=CAP_S * 4 + 120)
    if done.returncode != 0 or not result.exists():
        raise SystemExit(f"{label} (seed {seed}) failed:\n{done.stdout}{done.stderr}")
    figures = json.loads(result.read_text())
    return figures["seconds"], figures["samples"], figures["best"]


def anonymous(config: TrainingConfig) -> TrainingConfig:
    """``config`` without the script and model it was tuned for."""
    return replace(config, provenance=Provenance())


def before_the_guard(advice: Any, name: str) -> TrainingConfig:
    """The fastest setup the throughput tune measured, as it was written before the guard
    existed: with the optimizer's LR scaling rule for a changed batch, unmeasured."""
    if advice.fastest is None:
        return advice.config
    train, _ = split(WORKLOADS[name]()[1])
    facts = WorkloadFacts("", 0, len(train), False, True, torch.device("cpu"), 0.0, "AdamW")
    written, _ = lr_follows_batch(
        advice.fastest.config, TrainingConfig(batch_size=USER_BATCH), facts
    )
    return written


def bench(name: str, seeds: int, work: Path, every_samples: int) -> dict[str, Any]:
    description = WORKLOADS[name]()[2]
    target = TARGETS[name][0]
    print(f"\n== {name}: {description}; target validation accuracy {target:.0%}", flush=True)
    guarded, guarded_s = tune(name, work, hook=False)
    learned, learned_s = tune(
        name, work, hook=True, objective="time-to-loss", target=target, metric="accuracy"
    )
    unguarded = before_the_guard(guarded, name)
    # Without the provenance prepare() applies every knob of each, the default's too.
    picks = {
        "default": TrainingConfig(batch_size=USER_BATCH, num_threads=torch.get_num_threads()),
        "throughput-only": anonymous(unguarded),
        "guarded default": anonymous(guarded.config),
        "time-to-loss": anonymous(learned.config),
    }
    print(f"  guarded default: {guarded.objective} (tuning {guarded_s:.0f} s)", flush=True)
    print(f"  time-to-loss: {learned.objective} (tuning {learned_s:.0f} s)", flush=True)
    for label, config in picks.items():
        knobs = {k: v for k, v in config.knobs().items() if v != getattr(TrainingConfig(), k)}
        print(f"  {label:>16}: {knobs}", flush=True)
    times: dict[str, list[float]] = {label: [] for label in picks}
    samples: dict[str, list[int | None]] = {label: [] for label in picks}
    for seed in range(seeds):
        for label, config in picks.items():
            took, seen, acc = time_to_target(name, label, config, target, seed, work, every_samples)
            times[label].append(took if took is not None else math.inf)
            samples[label].append(seen)
            shown = (
                f"{took:.2f} s, {seen:,} samples"
                if took is not None and seen is not None
                else f"not within {CAP_S:.0f} s"
            )
            print(f"    seed {seed} {label:>16}: {shown} (best {acc:.1%})", flush=True)
    table(target, times, samples)
    return {
        "workload": name,
        "target": target,
        "seeds": seeds,
        "eval_every_samples": every_samples,
        "times_s": {k: [t if math.isfinite(t) else None for t in v] for k, v in times.items()},
        "samples": samples,
        "tuning_s": {"guarded default": guarded_s, "time-to-loss": learned_s},
        "objectives": {"guarded default": guarded.objective, "time-to-loss": learned.objective},
        "picks": {k: v.knobs() for k, v in picks.items()},
        "guard": guarded.to_dict()["guard"],
    }


def sooner_later(times: list[float], base: list[float]) -> tuple[int, int]:
    """On how many data orders ``times`` were sooner and later than ``base``'s."""
    pairs = list(zip(times, base, strict=True))
    return sum(t < b for t, b in pairs), sum(t > b for t, b in pairs)


def table(
    target: float, times: dict[str, list[float]], samples: dict[str, list[int | None]]
) -> None:
    """Each pick's median seconds to ``target``, its ratio to the default's, and per order
    against the default: sooner / later in time, and at the same samples (the same step
    crossed the target: the same training, whatever the clock said)."""
    seeds = len(times["default"])
    medians = {label: statistics.median(ts) for label, ts in times.items()}
    base = medians["default"]
    print(
        f"  target {target:.0%}: {'pick':>16}  {'median s':>9}  {'vs default':>10}"
        f"  sooner / later  same samples"
    )
    for label, median in medians.items():
        shown = f"{median:.2f}" if math.isfinite(median) else f">{CAP_S:.0f}"
        ratio = f"{base / median:.2f}x" if math.isfinite(median) else f"<{base / CAP_S:.2f}x"
        sooner, later = sooner_later(times[label], times["default"])
        same = sum(
            n is not None and n == d
            for n, d in zip(samples[label], samples["default"], strict=True)
        )
        print(
            f"  {'':>11}{label:>16}  {shown:>9}  {ratio:>10}  {sooner:>6} / {later:<5}"
            f"  {same:>5} of {seeds}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["cnn", "transformer"])
    parser.add_argument("--seeds", type=int, default=9, help="data orders each pick trains on")
    eval_every_argument(parser)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    profile = probe_system()
    print(
        f"# {profile.describe()} (ISA: {', '.join(profile.cpu.flags) or 'none'}); "
        f"tune budgets: {TUNE_BUDGET_S:.0f} s (throughput), "
        f"{TUNE_TTL_BUDGET_S:.0f} s (time-to-loss), the defaults; {args.seeds} data orders, "
        f"an evaluation every {args.eval_every_samples} samples; pid {os.getpid()}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="tune-tta-"))
    os.chdir(work)  # the trial logs go here
    results = [bench(name, args.seeds, work, args.eval_every_samples) for name in args.workloads]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
