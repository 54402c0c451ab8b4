"""advise() against the exhaustive grid (the oracle) on the reference workloads.

For each workload: run advise() with its default budget, then measure every configuration
of the same search space with the same trial length (the oracle), then re-measure the
baseline, the oracle's best and advise's pick interleaved in one run, so the ratios compare
like with like. The grid stops a configuration early when it runs under 70% of the best
seen so far (such a configuration cannot be the best), which makes the grid cheaper and the
time comparison harder for advise.

    python bench/oracle.py                 # all workloads (about 30 minutes on 2 cores)
    python bench/oracle.py mlp --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

from workloads import WORKLOADS

from autoaccel.frontends.advise import advise
from autoaccel.measure import MeterSettings
from autoaccel.runtime.data import describe_data
from autoaccel.search import PRUNE_BELOW
from autoaccel.trials.in_process import run_trial
from autoaccel.trials.workload import make_workload

ROUNDS = 3  # interleaved re-measurements of baseline, oracle and advise's pick


def bench(name: str, console: Console) -> dict[str, object]:
    model, data, description = WORKLOADS[name]()
    console.print(f"[bold]{name}[/bold]: {description}")
    settings = MeterSettings()
    storage = Path(tempfile.mkdtemp()) / "bench.db"
    started = time.monotonic()
    advice = advise(model, data, storage=str(storage), seed=0, settings=settings)
    advise_s = time.monotonic() - started
    space = advice.space
    workload = make_workload(model, describe_data(data), loss_fn=None, optimizer=None)
    grid = space.grid()
    console.print(
        f"  advise: {advise_s:.0f} s, {advice.search.trials_measured} trials; "
        f"grid: {len(grid)} configurations"
    )
    started = time.monotonic()
    results: list[tuple[float, dict[str, object], object]] = []

    def prune(done: float, running: float) -> bool:
        best = max((r[0] for r in results), default=0.0)
        return done >= 0.2 and running < PRUNE_BELOW * best

    for i, params in enumerate(grid):
        config = space.config_for(params)
        m = run_trial(workload, config, settings, prune=prune)
        results.append((m.samples_per_s if m.ok else 0.0, params, config))
        if i % 20 == 0:
            console.print(
                f"  grid {i + 1}/{len(grid)}: {m.samples_per_s:,.0f} samples/s {params}",
                highlight=False,
            )
    grid_s = time.monotonic() - started
    oracle_value, oracle_params, oracle_config = max(results, key=lambda r: r[0])
    pick = advice.config
    base = advice.search.baseline.config
    rates: dict[str, list[float]] = {"baseline": [], "oracle": [], "advise": []}
    for _ in range(ROUNDS):
        for key, config in (("baseline", base), ("oracle", oracle_config), ("advise", pick)):
            rates[key].append(run_trial(workload, config, settings).samples_per_s)
    ratio_oracle = [a / o for a, o in zip(rates["advise"], rates["oracle"], strict=True)]
    ratio_base = [a / b for a, b in zip(rates["advise"], rates["baseline"], strict=True)]
    pruned = sum(1 for r in results if r[0] == 0.0)
    return {
        "workload": name,
        "grid_stopped_early": pruned,
        "description": description,
        "baseline_samples_per_s": statistics.median(rates["baseline"]),
        "oracle_samples_per_s": statistics.median(rates["oracle"]),
        "advise_samples_per_s": statistics.median(rates["advise"]),
        "advise_over_oracle": statistics.median(ratio_oracle),
        "advise_over_oracle_range": [min(ratio_oracle), max(ratio_oracle)],
        "advise_over_baseline": statistics.median(ratio_base),
        "advise_over_baseline_range": [min(ratio_base), max(ratio_base)],
        "advise_confirmed_speedup": advice.speedup.median,
        "advise_s": advise_s,
        "grid_s": grid_s,
        "time_share": advise_s / grid_s,
        "trials": advice.search.trials_measured,
        "grid_size": len(grid),
        "oracle_params": oracle_params,
        "oracle_grid_samples_per_s": oracle_value,
        "advise_params": space.params_of(pick),
        "stop_reason": advice.search.stop_reason,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "workloads",
        nargs="*",
        default=list(WORKLOADS),
        help=f"any of {', '.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    unknown = sorted(set(args.workloads) - set(WORKLOADS))
    if unknown:
        parser.error(
            f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}"
        )
    console = Console(stderr=True)
    rows = [bench(name, console) for name in args.workloads]
    table = Table(title="advise vs. exhaustive grid (ratios re-measured interleaved, one run)")
    for column in (
        "workload",
        "baseline/s",
        "oracle/s",
        "advise/s",
        "advise/oracle",
        "advise/baseline",
        "tuning s",
        "grid s",
        "time share",
        "trials / grid",
    ):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            str(r["workload"]),
            f"{r['baseline_samples_per_s']:,.0f}",
            f"{r['oracle_samples_per_s']:,.0f}",
            f"{r['advise_samples_per_s']:,.0f}",
            f"{r['advise_over_oracle']:.3f}",
            f"{r['advise_over_baseline']:.2f}x",
            f"{r['advise_s']:.0f}",
            f"{r['grid_s']:.0f}",
            f"{r['time_share']:.1%}",
            f"{r['trials']} / {r['grid_size']}",
        )
    Console(width=200).print(table)
    for r in rows:
        Console().print(
            f"{r['workload']}: oracle {r['oracle_params']}\n"
            f"{' ' * len(str(r['workload']))}  advise {r['advise_params']}",
            highlight=False,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
