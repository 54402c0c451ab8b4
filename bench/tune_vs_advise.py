"""`autoaccel tune` on a script vs. `advise()` on the same model and data: same pick?

Runs both searches on the bundled image classifier (examples/train_cnn.py: its model, its
augmented dataset, its optimizer and loader settings), then measures the two picks both
ways a trial can run, in-process (advise's way) and as a script subprocess (tune's way),
interleaved (tune's, advise's, advise's again, ...). The repeat of advise's pick against
itself shows the measurement noise the difference is judged against.

    python bench/tune_vs_advise.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

from train_cnn import AugmentedImages, make_model  # noqa: E402

from autoaccel.frontends.advise import advise  # noqa: E402
from autoaccel.frontends.script import tune_script  # noqa: E402
from autoaccel.measure import MeterSettings  # noqa: E402
from autoaccel.pipeline import TUNE, PipelineOptions  # noqa: E402
from autoaccel.runtime.data import describe_data  # noqa: E402
from autoaccel.trials.in_process import run_trial  # noqa: E402
from autoaccel.trials.script import ScriptRunner  # noqa: E402
from autoaccel.trials.workload import make_workload  # noqa: E402

ROUNDS = 5
LOADER = {"batch_size": 32, "shuffle": True}


def sgd(params: object) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)  # type: ignore[arg-type]


def main() -> None:
    console = Console(stderr=True)
    settings = MeterSettings()
    work = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    started = time.monotonic()
    advice = advise(
        make_model(),
        AugmentedImages(4096),
        loader_kwargs=LOADER,
        optimizer=sgd,
        storage=str(work / "advise.db"),
        seed=0,
    )
    advise_s = time.monotonic() - started
    started = time.monotonic()
    options = PipelineOptions.checked(
        TUNE, storage=str(work / "tune.db"), settings=settings, seed=0
    )
    tuned = tune_script(
        ROOT / "examples" / "train_cnn.py",
        (),
        options,
        out=work / "autoaccel.yaml",
        console=console,
    )
    tune_s = time.monotonic() - started
    workload = make_workload(
        make_model(),
        describe_data(AugmentedImages(4096), loader_kwargs=LOADER),
        loss_fn=None,
        optimizer=sgd,
    )
    runner = ScriptRunner(
        ROOT / "examples" / "train_cnn.py",
        (),
        trials_dir=work / "remeasure",
        settings=settings,
        timeout_s=120,
    )
    picks = {"tune": tuned.advice.config, "advise": advice.config}
    print(f"tune   ({tune_s:.0f} s): {tuned.advice.space.params_of(picks['tune'])}")
    print(f"advise ({advise_s:.0f} s): {advice.space.params_of(picks['advise'])}")
    for label, notes in (("tune", tuned.advice.notes), ("advise", advice.notes)):
        print(f"{label} notes: {notes}", flush=True)
    ways = {
        "in-process": lambda config: run_trial(workload, config, settings).samples_per_s,
        "script": lambda config: runner.run(config).measurement.samples_per_s,
    }
    for way, measure in ways.items():
        rates: dict[str, list[float]] = {"tune": [], "advise": [], "advise again": []}
        for _ in range(ROUNDS):
            rates["tune"].append(measure(picks["tune"]))
            rates["advise"].append(measure(picks["advise"]))
            rates["advise again"].append(measure(picks["advise"]))
        between = [t / a for t, a in zip(rates["tune"], rates["advise"], strict=True)]
        noise = [b / a for b, a in zip(rates["advise again"], rates["advise"], strict=True)]
        print(
            f"{way:>10}: tune pick / advise pick median {statistics.median(between):.3f} "
            f"(min {min(between):.3f}, max {max(between):.3f}); noise, advise pick / itself "
            f"median {statistics.median(noise):.3f} (min {min(noise):.3f}, max {max(noise):.3f})"
            f"; {ROUNDS} interleaved rounds",
            flush=True,
        )


if __name__ == "__main__":
    main()
