"""Two `autoaccel tune` workers on one PostgreSQL study against one worker alone.

Starts a throwaway PostgreSQL server (``tests/pg_server.py``; Debian's ``postgresql``
package), then tunes the bundled image classifier (examples/train_cnn.py) twice, each on a
fresh database: once with one worker pinned to core 0, once with two workers pinned to
cores 0 and 1 (``taskset``), so that no two trials compete for a core. Each worker runs in
a folder of its own, as on another machine.

The figure is the wall time until the study holds the same number of searched trials (the
fewer of the two runs'), from the start of the run; the end phase (final round,
confirmation), which one worker runs alone, is printed apart. Also printed: trials per
worker, and configs measured twice (must be 0).

    python bench/shared_study.py [--trials 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from pg_server import running_server  # noqa: E402

from autoaccel.probe import probe_system  # noqa: E402
from autoaccel.search.shared import DUPLICATE_ATTR, WORKER_ATTR  # noqa: E402

SCRIPT = ROOT / "examples" / "train_cnn.py"
AGAIN = ("final round", "confirmation")  # the end phase measures finalists again, on purpose


def run_workers(url: str, cores: list[int], trials: int, work: Path) -> dict[str, object]:
    """Tune with one worker per core; what the study holds afterwards and when."""
    started = time.time()
    processes = []
    for core in cores:
        folder = work / f"worker-{core}"
        folder.mkdir(parents=True)
        command = ["taskset", "-c", str(core), sys.executable, "-m", "autoaccel.cli", "tune"]
        command += [str(SCRIPT), "--storage", url, "--study", "bench", "--budget", "30m"]
        command += ["--max-trials", str(trials), "--out", str(folder / "autoaccel.yaml")]
        log = (folder / "tune.log").open("w")
        processes.append(
            subprocess.Popen(
                [*command, "--json"], cwd=folder, stdout=subprocess.PIPE, stderr=log, text=True
            )
        )
    outputs = [p.communicate()[0] for p in processes]
    wall_s = time.time() - started
    if any(p.returncode for p in processes):
        raise SystemExit(f"a worker failed; see {work}/worker-*/tune.log")
    study = optuna.load_study(study_name="bench", storage=url)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    searched = [  # measured by the search: completed, or stopped early as clearly slower
        t
        for t in study.get_trials(states=finished)
        if "measurement" in t.user_attrs
        and DUPLICATE_ATTR not in t.user_attrs
        and t.user_attrs.get("source") not in AGAIN
    ]
    done = sorted(t.datetime_complete.timestamp() - started for t in searched)
    keys = [json.dumps(t.params, sort_keys=True) for t in searched]
    per_worker: dict[str, int] = {}
    for t in searched:
        who = str(t.user_attrs.get(WORKER_ATTR))
        per_worker[who] = per_worker.get(who, 0) + 1
    written = [json.loads(out).get("config_path") for out in outputs]
    return {
        "done_s": done,
        "wall_s": wall_s,
        "duplicates": len(keys) - len(set(keys)),
        "per_worker": per_worker,
        "configs_written": sum(path is not None for path in written),
        "step_backs": sum(DUPLICATE_ATTR in t.user_attrs for t in study.trials),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16, help="--max-trials of the study")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs two usable cores")
    print(f"machine: {probe_system().describe()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="autoaccel-shared-bench-"))
    with running_server() as server:
        runs = {
            "one worker": run_workers(server.url(), [0], args.trials, work / "one"),
            "two workers": run_workers(server.url(), [0, 1], args.trials, work / "two"),
        }
    n = min(len(r["done_s"]) for r in runs.values())  # type: ignore[arg-type]
    for label, r in runs.items():
        done = r["done_s"]
        print(
            f"{label}: {len(done)} searched trials, trial {n} done at {done[n - 1]:.0f} s, "  # type: ignore[index,arg-type]
            f"whole run {r['wall_s']:.0f} s (end phase included); per worker {r['per_worker']}; "
            f"measured twice {r['duplicates']}; step-backs {r['step_backs']}; configs written "
            f"{r['configs_written']}",
            flush=True,
        )
    one, two = runs["one worker"]["done_s"], runs["two workers"]["done_s"]
    ratio = two[n - 1] / one[n - 1]  # type: ignore[index]
    whole = runs["two workers"]["wall_s"] / runs["one worker"]["wall_s"]  # type: ignore[operator]
    print(
        f"two workers / one worker, wall time to {n} searched trials: {ratio:.2f}x "
        f"(target <= 0.6x); whole runs: {whole:.2f}x"
    )


if __name__ == "__main__":
    main()
