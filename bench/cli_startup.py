"""How long `autoaccel --help` and `autoaccel show` take, on two checkouts side by side.

    python bench/cli_startup.py --before /tmp/old-checkout

Each command runs REPEATS times per checkout, alternating, in a fresh interpreter with
``PYTHONPATH`` at the checkout; the best time of each is kept (start-up has no useful
mean: the noise is all on one side). Prints the times and their ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
REPEATS = 7
COMMANDS = {
    "--help": ["--help"],
    "show": ["show", str(HERE / "tests" / "data" / "configs" / "v1.yaml")],
}


def once(checkout: Path, argv: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "autoaccel.cli", *argv],
        env=env,
        cwd=checkout,  # -m puts the working folder first on sys.path
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the older checkout")
    parser.add_argument("--after", type=Path, default=HERE, help="the checkout under test")
    args = parser.parse_args()
    print(f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores), best of {REPEATS}")
    for name, argv in COMMANDS.items():
        best = {"before": float("inf"), "after": float("inf")}
        for _ in range(REPEATS):
            for side in best:
                best[side] = min(best[side], once(getattr(args, side), argv))
        ratio = best["before"] / best["after"]
        print(
            f"autoaccel {name:6s}  before {best['before']:.3f} s  after {best['after']:.3f} s  "
            f"{ratio:.1f}x faster"
        )


if __name__ == "__main__":
    main()
