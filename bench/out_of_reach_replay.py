"""What the search's out-of-reach rule would have saved on the stored tunes, and whether it
would have kept any of them from writing what they wrote.

``pipeline/reach.out_of_reach`` tells the search, before a setup is measured, that the
guard could never write it at this budget: even at 3x the best samples/s so far, a check
run would hold fewer optimizer steps of it than the guard needs, and its trial's curve too
few to decide. This replays that very function over every stored tune log in
``bench/results`` (the throughput objective, with its progress lines), trial by trial, with
the best measured before each trial and the log's own budget and baseline:

- which measured trials the rule would not have run, and the seconds they took (the
  "s left" before and after each);
- whether the guard let any of them stand (a progress line of its steps that kept pace or
  was kept): only such a setup can be written, so none means the rule cost no pick.

The search after a skipped trial would have gone on differently (the saved seconds buy
other trials), so this counts the cost and the risk, not a new result. Reads files only.

    python bench/out_of_reach_replay.py
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from autoaccel.budget import Budget
from autoaccel.config import TrainingConfig
from autoaccel.measure import Measurement
from autoaccel.pipeline import Job
from autoaccel.pipeline.guard import steps_words
from autoaccel.pipeline.reach import HEADROOM, out_of_reach
from autoaccel.probe import HardwareProfile, probe_system
from autoaccel.search import TrialRecord, WorkloadFacts

RESULTS = Path(__file__).resolve().parent / "results"
TRIAL = re.compile(r"^trial #(\d+) \(\d+/\d+\)\s+(.*?)\s+->\s+(.*?)\s+\| best .*?\|\s+(\d+) s left")
RATE = re.compile(r"^([\d,]+) samples/s$")
BUDGET = re.compile(r"budget \((\d+) s\)")
SEARCH = re.compile(r"autoaccel: search \((\d+) s of")
CURVE = re.compile(r"over the ([\d.]+) s both trials trained")
DEFAULT_CURVE_S = 1.7  # a trial's curve, where the log names none (1.5 s window and warm-up)


@dataclass
class Trial:
    number: int
    config: TrainingConfig
    rate: float | None  # None: not measured to the end (pruned, failed) or not run
    seconds: float
    ran: bool = True  # False: the rule itself left it out (a tune that had it)


def _config(params: str) -> TrainingConfig:
    fields: dict[str, object] = {}
    for pair in params.split(", "):
        name, _, value = pair.partition("=")
        if name in ("batch_size", "num_threads", "num_workers", "processes", "grad_accum_steps"):
            fields[name] = int(value)
        elif name == "precision":
            fields[name] = value
    if fields.get("processes", 1) != 1:
        fields["strategy"] = "ddp"
    return TrainingConfig(**fields)  # type: ignore[arg-type]


def _trials(lines: list[str]) -> list[Trial]:
    found: list[Trial] = []
    left = next((float(m.group(1)) for line in lines if (m := SEARCH.search(line))), None)
    for line in lines:
        m = TRIAL.match(line)
        if not m:
            continue
        now = float(m.group(4))
        rate = RATE.match(m.group(3))
        value = float(rate.group(1).replace(",", "")) if rate else None
        took = (left - now) if left is not None else 0.0
        ran = not m.group(3).startswith("not run")
        trial = Trial(int(m.group(1)), _config(m.group(2)), value, max(0.0, took), ran)
        found.append(trial)
        left = now
    return found


def runs(path: Path) -> list[list[str]]:
    """The tunes a log holds (some hold several), each from its baseline line on; only those
    with the throughput objective's guard (the rule applies to no other)."""
    found: list[list[str]] = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("autoaccel: baseline ("):
            found.append([])
        if found:
            found[-1].append(line)
    return [
        run
        for run in found
        if any("convergence check" in line for line in run)
        and not any("time-to-loss" in line or "schedule study" in line for line in run)
    ]


def replay(
    lines: list[str], profile: HardwareProfile
) -> tuple[list[tuple[Trial, str]], float] | None:
    """The trials of one tune's log ``out_of_reach`` would not have run, and the search's
    measured seconds; None when it holds no search to replay."""
    budget = next((int(m.group(1)) for line in lines if (m := BUDGET.search(line))), None)
    trials = _trials(lines)
    if budget is None or not trials or trials[0].number != 0 or trials[0].rate is None:
        return None
    base = trials[0]
    assert base.rate is not None
    curve_s = max((float(m.group(1)) for ln in lines if (m := CURVE.search(ln))), default=0.0)
    curve_s = curve_s or DEFAULT_CURVE_S
    steps = 20
    yours = Measurement(
        "ok",
        samples_per_s=base.rate,
        losses=(1.0,) * steps,
        loss_samples=tuple(curve_s * base.rate * (k + 1) / steps for k in range(steps)),
    )
    facts = WorkloadFacts("replay", 1, None, False, False, torch.device("cpu"), 1.0)
    job = Job(None, base.config, yours, facts, profile, trainer=object())  # type: ignore[arg-type]
    why = out_of_reach(job, Budget(budget))
    skipped, best = [], base.rate
    for trial in trials[1:]:
        record = TrialRecord(0, {}, base.config, Measurement("ok", samples_per_s=best), "x")
        reason = why(trial.config, record)
        if reason is not None:
            skipped.append((trial, reason))
        if trial.rate is not None:
            best = max(best, trial.rate)
    return skipped, sum(t.seconds for t in trials[1:])


def stood(lines: list[str], words: str) -> bool:
    """Whether the guard let a setup of these steps stand in this tune."""
    return any(
        line.startswith(f"autoaccel: {words}:") and ("kept pace" in line or "is kept" in line)
        for line in lines
    )


def main() -> int:
    print(
        f"out_of_reach replayed on the stored tune logs (HEADROOM {HEADROOM:g}x the best so "
        "far); reads files only\n"
    )
    profile = probe_system(light=True)
    total_s = saved_s = 0.0
    logs = cost = 0
    for path in sorted(RESULTS.glob("*.txt")):
        for n, run in enumerate(runs(path)):
            done = replay(run, profile)
            if done is None:
                continue
            skipped, search_s = done
            logs += 1
            total_s += search_s
            if not skipped:
                continue
            took = sum(t.seconds for t, _ in skipped)
            saved_s += took
            print(
                f"{path.name} (tune {n + 1}): {len(skipped)} not run, {took:.0f} s of "
                f"{search_s:.0f} s searched"
            )
            for trial, _ in skipped:
                words = steps_words(trial.config)
                hit = stood(run, words)
                cost += hit
                rate = f"{trial.rate:,.0f} samples/s" if trial.rate else "stopped early"
                rate = rate if trial.ran else "not run (that tune had the rule)"
                mark = "  <- the guard let it stand in that tune" if hit else ""
                print(f"  trial #{trial.number} {words}: {rate}, {trial.seconds:.0f} s{mark}")
            print(f"  (the first: {skipped[0][1]})")
    print(
        f"\n{logs} guarded tunes replayed: {saved_s:.0f} s of their {total_s:.0f} s of search "
        f"trials ({saved_s / total_s:.0%}) went to setups the rule would not have run; "
        f"the guard let {cost} of those setups stand"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
