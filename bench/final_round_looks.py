"""How far single trial measurements ("looks") of one setup spread, and how often one look
each, or two, or two beside the search look, puts two setups in the wrong order.

The README job's final round decides between finalists on a few looks; this measures what a
look is worth there. Each cycle measures your setup and two candidates in turn as real
subprocess trials of ``examples/train_cnn.py`` (the tune's own ``ScriptRunner`` and meter),
the candidates' order alternating between cycles so neither always follows the other.

Printed: each setup's median, spread (max/min) and each look; then, over the cycles, how
often the slower candidate (by median of all its looks) beats the faster on one look each,
on the mean of two, and on the median of three (the final round's rule beside two
re-measurements). Run it alone: anything beside it makes every figure meaningless.

    python bench/final_round_looks.py [--cycles 8]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from autoaccel.config import TrainingConfig
from autoaccel.measure import MeterSettings
from autoaccel.probe import probe_system
from autoaccel.trials.script import ScriptRunner

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=8, help="rounds of the three setups")
    args = parser.parse_args()
    system = probe_system()
    cpu = system.cpu
    print(f"# machine: {cpu.model}, {cpu.usable_cores} usable cores, {' '.join(cpu.flags)}")
    yours = TrainingConfig.from_dict(
        {"batch_size": 32, "num_threads": 2, "num_workers": 0, "precision": "32-true"}
    )
    small = replace(yours, precision="bf16-mixed", channels_last=True)
    setups = {
        "yours (32, fp32)": yours,
        "bf16 @ 32": small,
        "bf16 @ 64": replace(small, batch_size=64),
    }
    looks: dict[str, list[float]] = {name: [] for name in setups}
    with tempfile.TemporaryDirectory() as folder:
        runner = ScriptRunner(
            ROOT / "examples" / "train_cnn.py",
            (),
            trials_dir=Path(folder),
            settings=MeterSettings(),
            timeout_s=120.0,
        )
        names = list(setups)
        for cycle in range(args.cycles):
            order = [names[0], *(names[1:] if cycle % 2 == 0 else names[:0:-1])]
            for name in order:
                looks[name].append(runner.run(setups[name]).measurement.samples_per_s)
            print(f"cycle {cycle + 1}: " + ", ".join(f"{n} {looks[n][-1]:,.0f}" for n in order))
    for name, rates in looks.items():
        print(
            f"{name:18s} median {statistics.median(rates):7,.0f} samples/s, "
            f"spread {max(rates) / min(rates):.2f}x; looks " + " ".join(f"{r:,.0f}" for r in rates)
        )
    a, b = looks[names[1]], looks[names[2]]
    fast, slow = (b, a) if statistics.median(b) >= statistics.median(a) else (a, b)
    ratio = statistics.median(fast) / statistics.median(slow)
    print(f"faster candidate by median of all looks: {ratio:.2f}x")
    one = sum(s > f for f, s in zip(fast, slow, strict=True))
    two = [(f, s) for f, s in zip(pairs(fast), pairs(slow), strict=True)]
    wrong_two = sum(statistics.mean(s) > statistics.mean(f) for f, s in two)
    three = [(f, s) for f, s in zip(triples(fast), triples(slow), strict=True)]
    wrong_three = sum(statistics.median(s) > statistics.median(f) for f, s in three)
    print(f"wrong order on one look each: {one} of {len(fast)}")
    print(f"wrong order on the mean of two looks each: {wrong_two} of {len(two)}")
    print(f"wrong order on the median of three looks each: {wrong_three} of {len(three)}")
    return 0


def pairs(rates: list[float]) -> list[tuple[float, ...]]:
    """Every two looks of one setup."""
    return list(itertools.combinations(rates, 2))


def triples(rates: list[float]) -> list[tuple[float, ...]]:
    """Every three looks of one setup."""
    return list(itertools.combinations(rates, 3))


if __name__ == "__main__":
    sys.exit(main())
