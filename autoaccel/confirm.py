"""The end of a search: the finalists measured again, and the winner confirmed against the
baseline in interleaved pairs.

One short trial per config is noisy (a busy moment on the machine can sink a good config or
lift a poor one), so the best few are measured again in turn (A B C A B C) and the one with
the best median of its looks wins. The search trial that made a config a finalist was picked
for being high, so alone with one re-measurement a lucky one outvotes it (the README job once
wrote fp32 at 1.11x that way, over a bf16 setup that confirmed 1.86x in the next run): it
counts only beside two re-measurements or more, where the median of three or more cannot be
that one look. Counted there, it breaks the near-ties that one or two looks leave: in the
README job, single looks of one setup spread by up to 1.9x (bench/results/
final-round-looks-xeon-2026-12-06.txt), and one look each wrote bf16 at batch 32 (1.27-1.33x
paired) over batch 64 (1.6-2.0x) in 2 runs of 6. The speedup is then measured as ratios of
interleaved pairs, baseline then winner (A B A B ...), so machine drift hits both alike.
Both take as many rounds as the run's budget leaves, down to one confirmation pair.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from autoaccel.budget import Budget
from autoaccel.config import TrainingConfig

if TYPE_CHECKING:  # only for annotations: the CLI reads CONFIRM_PAIRS without torch or Optuna
    from autoaccel.measure import Measurement
    from autoaccel.search.records import TrialRecord

__all__ = [
    "CONFIRM_PAIRS",
    "FINALISTS",
    "FINAL_ROUNDS",
    "Speedup",
    "confirm",
    "final_round",
    "judged_looks",
    "knobs_key",
    "measure_in_turn",
    "trials_of",
]

T = TypeVar("T")
R = TypeVar("R")

CONFIRM_PAIRS = 3
FINALISTS = 3  # configs re-measured at the end of a search
FINAL_ROUNDS = 2  # extra measurements of each finalist


@dataclass(frozen=True)
class Speedup:
    """Best vs. baseline, measured in interleaved pairs (A B A B ...) so drift cancels."""

    ratios: tuple[float, ...]
    baseline_samples_per_s: tuple[float, ...]
    best_samples_per_s: tuple[float, ...]
    yours_kept: bool = False  # the pick is your own setup: nothing to confirm

    @property
    def median(self) -> float:
        return statistics.median(self.ratios) if self.ratios else 1.0

    @property
    def min(self) -> float:
        return min(self.ratios) if self.ratios else 1.0

    @property
    def max(self) -> float:
        return max(self.ratios) if self.ratios else 1.0

    def __str__(self) -> str:
        if self.yours_kept:
            return "1.00x (your setup kept)"
        if not self.ratios:
            return "not confirmed (no pairs ran)"
        return (
            f"{self.median:.2f}x (min {self.min:.2f}, max {self.max:.2f}, {len(self.ratios)} pairs)"
        )


def knobs_key(knobs: dict[str, object]) -> str:
    """One string per set of knob values (a config's knobs, or a trial's searched params):
    what "the same config" means in the final round and the study's record.

    Example:
        >>> knobs_key({"b": 1, "a": 2}) == knobs_key({"a": 2, "b": 1})
        True
    """
    return repr(sorted(knobs.items()))


def judged_looks(search: Sequence[T], again: Sequence[T]) -> list[T]:
    """The samples/s a finalist is judged on (by their median): its re-measurements, with
    its search trials beside two or more of them (never a lone lucky look against one), or
    its search trials when no re-measurement succeeded.

    Example:
        >>> judged_looks([1000.0], [400.0])  # one re-measurement: the lucky trial is left out
        [400.0]
        >>> judged_looks([1000.0], [400.0, 420.0])  # beside two: the median is 420
        [400.0, 420.0, 1000.0]
        >>> judged_looks([300.0], [])
        [300.0]
    """
    if not again:
        return list(search)
    return [*again, *search] if len(again) >= 2 else list(again)


def _fitting(count: int, cost_s: float, budget: Budget | None, keep_s: float) -> int:
    """How many of ``count`` measurements of ``cost_s`` each fit in what the budget leaves."""
    if budget is None or cost_s <= 0:
        return count
    return max(0, min(count, math.floor(budget.left_s(keep_s=keep_s) / cost_s)))


def _finalists(records: list[TrialRecord], finalists: int) -> list[TrialRecord]:
    """The best measured configs, each once, best first."""
    ranked: list[TrialRecord] = []
    seen: set[str] = set()
    for record in sorted(records, key=lambda r: r.value, reverse=True):
        key = knobs_key(record.config.knobs())
        if record.measurement.ok and key not in seen:
            seen.add(key)
            ranked.append(record)
    return ranked[:finalists]


def measure_in_turn(
    finalists: Sequence[T], rounds: int, round_of: Callable[[int], Callable[[T], R | None] | None]
) -> list[list[R]]:
    """The final round's one rule: every finalist measured again, in turn, round after
    round (A B C A B C), so drift on the machine hits them alike.

    Args:
        finalists: What is measured again.
        rounds: How many rounds (numbered 1, 2, ...).
        round_of: Sets up round ``r`` and returns how to measure a finalist in it (None
            for a failed measurement), or None to skip the round.

    Returns:
        Each finalist's measurements, in the finalists' order.

    Example:
        >>> measure_in_turn(["a", "b"], 2, lambda r: lambda f: f"{f}{r}")
        [['a1', 'a2'], ['b1', 'b2']]
    """
    found: list[list[R]] = [[] for _ in finalists]
    for number in range(1, rounds + 1):
        measure = round_of(number)
        if measure is None:
            continue
        for i, finalist in enumerate(finalists):
            value = measure(finalist)
            if value is not None:
                found[i].append(value)
    return found


def trials_of(records: Sequence[TrialRecord], config: TrainingConfig) -> list[TrialRecord]:
    """The trials in ``records`` that measured ``config``'s setup and succeeded."""
    key = knobs_key(config.knobs())
    return [r for r in records if r.measurement.ok and knobs_key(r.config.knobs()) == key]


def _judged(
    finalist: TrialRecord, records: list[TrialRecord], again: list[Measurement]
) -> list[Measurement]:
    """The measurements a finalist is judged on: ``judged_looks`` of its search trials
    and its re-measurements."""
    search = [r.measurement for r in trials_of(records, finalist.config)]
    return judged_looks(search, again)


def final_round(
    measure: Callable[[TrainingConfig], Measurement],
    records: list[TrialRecord],
    *,
    finalists: int = FINALISTS,
    rounds: int = FINAL_ROUNDS,
    max_measurements: int | None = None,
    budget: Budget | None = None,
    trial_s: float = 0.0,
    keep_s: float = 0.0,
) -> tuple[TrialRecord, str | None]:
    """Re-measure the top configs interleaved and keep the one with the best median.

    Args:
        max_measurements: Trials left under ``max_trials``; fewer rounds (or none) fit.
        budget: The run's deadline: only rounds of ``trial_s`` per finalist that fit in
            what it leaves, ``keep_s`` kept (for the confirmation), are run; after the
            first, each round only while it still fits at the cost the rounds so far
            measured (``keep_s`` scaled alike), so the planned pairs are not squeezed.

    Returns:
        The winner (its measurement the median of its re-measurements) and a line of
        evidence, or the best record and None when there is nothing to compare.
    """
    top = _finalists(records, finalists)
    if max_measurements is not None:
        rounds = min(rounds, max(max_measurements, 0) // max(len(top), 1))
    rounds = _fitting(rounds, trial_s * len(top), budget, keep_s)
    if len(top) < 2 or rounds < 1:
        return (top[0] if top else records[0]), None

    began: list[float] = []  # when each round started

    def again(number: int) -> Callable[[TrialRecord], Measurement | None] | None:
        if budget is not None:
            began.append(budget.clock())
            if number > 1 and trial_s > 0:
                # The rounds so far show what a look really costs here: the next round
                # runs only if it fits with the confirmation's pairs at that cost too.
                look_s = (began[-1] - began[0]) / ((number - 1) * len(top))
                if not budget.allows(look_s * len(top), keep_s=keep_s * look_s / trial_s):
                    return None
        return lambda record: m if (m := measure(record.config)).ok else None

    more = measure_in_turn(top, rounds, again)
    runs = [_judged(r, records, m) for r, m in zip(top, more, strict=True)]
    medians = [statistics.median(m.samples_per_s for m in ms) for ms in runs]
    won = max(range(len(top)), key=lambda i: medians[i])
    middle = sorted(runs[won], key=lambda m: m.samples_per_s)[(len(runs[won]) - 1) // 2]
    evidence = "; ".join(
        f"trial {r.number}: median {medians[i]:,.0f} samples/s of {len(runs[i])}"
        + (" with its search trial" if len(runs[i]) > len(m) > 1 else "")
        for i, (r, m) in enumerate(zip(top, more, strict=True))
    )
    line = f"finalists re-measured in turn ({evidence}); trial {top[won].number} kept"
    return replace(top[won], measurement=middle), line


def confirm(
    measure: Callable[[TrainingConfig], Measurement],
    baseline: TrainingConfig,
    best: TrainingConfig,
    *,
    pairs: int = CONFIRM_PAIRS,
    budget: Budget | None = None,
    trial_s: float = 0.0,
) -> Speedup:
    """Re-measure baseline and best interleaved (A B A B ...); ratios of each pair.

    With ``budget``, up to ``pairs``: the first when two trials (``2 x trial_s``) fit in
    what it leaves, or at least one trial's time is left, and each after it while the last
    pair's measured cost still fits (a 2m README job stopped at the 3 pairs its estimate
    allowed, 14 s of its budget unused, though a pair took about 8 s): the confirmation is what
    the speedup stands on, but the run must end within its budget plus one trial.
    """
    if pairs > 0 and budget is not None and _fitting(pairs, 2 * trial_s, budget, 0.0) == 0:
        # One pair even when it does not quite fit, if it starts with a trial's time left:
        # the run then ends within the budget plus one trial.
        pairs = 1 if budget.left_s() >= trial_s else 0
    ratios, base_rates, best_rates = [], [], []
    pair_s = 2 * trial_s
    clock = budget.clock if budget is not None else None
    for n in range(pairs):
        started = clock() if clock is not None else 0.0
        if n and budget is not None and clock is not None and not budget.allows(pair_s):
            break  # the pairs measured so far show what one costs: no room for another
        a = measure(baseline)
        b = measure(best)
        pair_s = clock() - started if clock is not None else 0.0
        if a.ok and b.ok and a.samples_per_s > 0:
            ratios.append(b.samples_per_s / a.samples_per_s)
            base_rates.append(a.samples_per_s)
            best_rates.append(b.samples_per_s)
    return Speedup(tuple(ratios), tuple(base_rates), tuple(best_rates))
