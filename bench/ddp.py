"""Does `autoaccel tune` measure DDP candidates and keep the faster of 1 and 2 processes?

Tunes the bundled image classifier (examples/train_cnn.py) with its default search, which
on this machine includes ``processes`` (1..usable cores, torchrun with gloo). Then the
search's best one-process config and its best two-process config run again as script
trials, in interleaved pairs (1 then 2, 2 then 1, ...), so both see the same machine.
Prints the paired ratio, and whether the pick has the processes of the faster one.

    python bench/ddp.py [--budget 180] [--pairs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autoaccel.frontends.script import tune_script  # noqa: E402
from autoaccel.measure import MeterSettings  # noqa: E402
from autoaccel.pipeline import TUNE, PipelineOptions  # noqa: E402
from autoaccel.probe import probe_system  # noqa: E402
from autoaccel.search.records import TrialRecord  # noqa: E402
from autoaccel.trials.script import ScriptRunner  # noqa: E402

SCRIPT = ROOT / "examples" / "train_cnn.py"


def best_with(records: list[TrialRecord], processes: int) -> TrialRecord | None:
    ok = [r for r in records if r.measurement.ok and r.params.get("processes") == processes]
    return max(ok, key=lambda r: r.value) if ok else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=180.0, help="tune's budget in seconds")
    parser.add_argument("--pairs", type=int, default=5, help="interleaved pairs afterwards")
    args = parser.parse_args()
    print(f"machine: {probe_system().describe()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="autoaccel-ddp-bench-"))
    options = PipelineOptions.checked(
        TUNE, budget_s=args.budget, storage=str(work / "study.db"), seed=0
    )
    tuned = tune_script(
        SCRIPT, (), options, out=work / "autoaccel.yaml", console=Console(stderr=True)
    )
    records = tuned.advice.search.records
    picked = tuned.advice.config.processes
    print(f"pick: {tuned.advice.space.params_of(tuned.advice.config)}")
    counts = {n: sum(r.params.get("processes") == n for r in records) for n in (1, 2)}
    print(f"search trials by processes: {counts}", flush=True)
    one, two = best_with(records, 1), best_with(records, 2)
    if one is None or two is None:
        print("the search measured no successful config with 1 and with 2 processes")
        raise SystemExit(1)
    for label, record in (("1 process ", one), ("2 processes", two)):
        print(f"best {label}: #{record.number} {record.params} {record.value:,.0f} samples/s")
    runner = ScriptRunner(
        SCRIPT, (), trials_dir=work / "pairs", settings=MeterSettings(), timeout_s=120
    )
    ratios = []
    for i in range(args.pairs):
        order = (one, two) if i % 2 == 0 else (two, one)
        rates = {}
        for record in order:
            rates[record.params["processes"]] = runner.run(record.config).measurement.samples_per_s
        ratios.append(rates[2] / rates[1])
        print(f"pair {i + 1}: 1 process {rates[1]:,.0f}, 2 processes {rates[2]:,.0f} samples/s")
    median = statistics.median(ratios)
    faster = 2 if median > 1 else 1
    verdict = "kept the faster" if picked == faster else "NOT the faster"
    print(
        f"2 processes / 1 process: median {median:.3f} (min {min(ratios):.3f}, max "
        f"{max(ratios):.3f}) over {args.pairs} interleaved pairs; the faster is {faster} "
        f"process(es); the pick runs {picked}: {verdict}"
    )


if __name__ == "__main__":
    main()
