"""Convergence evidence from the search's own trials, at no extra cost.

Every throughput trial trains your model from the same initial weights on the same data
order (a script seeds itself and runs fresh; ``advise()`` trains a copy of the same state),
and the meter keeps each step's training loss with the samples trained by then
(``Measurement.loss_samples``; the study stores them compacted, ``compact_curve``). At the
trial's measured samples/s that is a loss curve against training time, for free, for your
setup and for every candidate.

The rule is the guard's (``autoaccel.time_to_loss.guard``): over the time both trials
trained, your setup's curve sets the levels (each new best up to where it flattens), and a
candidate whose steps are not yours is kept only when it reaches every level no later than
yours, within ``GUARD_TOLERANCE``. Per-step losses are noisy, so each curve is first averaged
into ``CURVE_POINTS`` equal stretches of time (each step weighted by its samples). The
trials decide only when their curves are long enough and your loss fell clearly
(``curve_verdict`` says which); otherwise the verdict is "unchecked" and the pipeline may
run the guard's own check runs, when its budget plan has room for them.

Time is samples over the steady rate: one-off start-up costs (the first steps, loader
workers, process groups) are not training speed and would otherwise sink whichever trial
paid more of them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from statistics import geometric_mean

from autoaccel.config import TrainingConfig
from autoaccel.curves import CurvePoint, LossRun, find_plateau, level_ratios, target_levels
from autoaccel.measure import Measurement
from autoaccel.states import Outcome
from autoaccel.time_to_loss.guard import GUARD_TOLERANCE, GuardVerdict

__all__ = [
    "CURVE_POINTS",
    "MIN_DROP",
    "MIN_POINTS",
    "could_decide",
    "curve_verdict",
    "trial_run",
]

CURVE_POINTS = 20  # stretches each trial's curve is averaged into, at most
STEPS_PER_POINT = 2  # ... each holding at least this many steps of both trials
MIN_POINTS = 5  # fewer stretches than this: too short to decide
MIN_DROP = 0.05  # your loss must fall this much (relative) over the common time to decide
# ... and by this many times the noise of its stretches' means: within less, every level
# is reached "within the noise" and the pace read is noise. Of the 102 trial-curve verdicts
# that kept pace on the stored benches, the CNN examples' 100 fell 2.7-11x their noise
# (median 4.7); the HF example's 2 fell 1.2x and less: one read batch 64 at 1.65x your
# pace, where 9 s runs on 4 data orders read it at 0.87-1.18x (median 0.95x) and your
# setup against itself at 0.79-1.29x (bench/results/hf-batch-64-pace-epyc-2026-12-07.txt).
NOISE_FALLS = 2.0


def trained_s(measurement: Measurement) -> float:
    """Seconds of training the trial's curve covers, at its steady samples/s (0: no curve)."""
    if not measurement.loss_samples or measurement.samples_per_s <= 0:
        return 0.0
    return measurement.loss_samples[-1] / measurement.samples_per_s


def could_decide(yours: Measurement, steps_per_s: float) -> bool:
    """Whether a trial taking up to ``steps_per_s`` optimizer steps a second could hold the
    steps ``curve_verdict`` needs over the time your trial's curve covers (its horizon is
    the shorter of the two curves).

    Example:
        >>> yours = Measurement("ok", samples_per_s=100.0, losses=(1.0,) * 20,
        ...                     loss_samples=tuple(10 * (i + 1) for i in range(20)))
        >>> could_decide(yours, 5.0), could_decide(yours, 4.0)  # 2 s of your curve
        (True, False)
    """
    return trained_s(yours) * steps_per_s >= MIN_POINTS * STEPS_PER_POINT


def trial_run(
    measurement: Measurement,
    config: TrainingConfig,
    *,
    horizon_s: float,
    window: float,
    every: float | None = None,
) -> LossRun:
    """The trial's training loss over its first ``horizon_s`` seconds (samples over its
    samples/s): at each step's end, the sample-weighted mean loss of the last ``window``
    samples (from the first full window on). ``every``: only at the first step past each
    multiple of it (samples), for the levels; None: at every step, for the crossings.

    Example:
        >>> m = Measurement("ok", samples_per_s=10.0, losses=(3.0, 1.0, 2.0, 0.5),
        ...                 loss_samples=(10, 20, 30, 40))
        >>> run = trial_run(m, None, horizon_s=4.0, window=20)
        >>> [(p.seconds, p.loss) for p in run.curve]
        [(2.0, 2.0), (3.0, 1.5), (4.0, 1.25)]
    """
    rate = measurement.samples_per_s
    ends = [n for n in measurement.loss_samples if n <= horizon_s * rate * (1 + 1e-9)]
    starts = [0, *ends[:-1]]
    points: list[CurvePoint] = []
    first, mark = 0, every or 0.0
    for i, end in enumerate(ends):
        while first < i and starts[first] < end - window:  # steps wholly in the window
            first += 1
        if end < window or end < mark:
            continue
        if every:
            mark = (end // every + 1) * every
        steps = range(first, i + 1)
        weighted = sum(measurement.losses[k] * (ends[k] - starts[k]) for k in steps)
        points.append(CurvePoint(round(end / rate, 6), i + 1, weighted / (end - starts[first])))
    return LossRun(config, Outcome.OK, "", tuple(points))


def noise_margin(measurement: Measurement, horizon_s: float, window: float) -> float:
    """How far two means over ``window`` samples of this trial's losses may differ by
    chance: twice the standard error of their difference, from the spread of its steps'
    losses around their sliding mean (the trend taken out) over the first ``horizon_s``.

    Example:
        >>> flat = Measurement("ok", samples_per_s=10.0, losses=(1.0, 3.0) * 20,
        ...                    loss_samples=tuple(range(10, 410, 10)))
        >>> round(noise_margin(flat, 40.0, 40), 3)  # steps of 10 samples, +-1 around 2
        1.434
    """
    run = trial_run(measurement, None, horizon_s=horizon_s, window=window)  # type: ignore[arg-type]
    trend = {p.step: p.loss for p in run.curve}
    ends = measurement.loss_samples
    deviations, sizes = [], []
    for step, loss in enumerate(measurement.losses, start=1):
        if step in trend:
            deviations.append(loss - trend[step])
            sizes.append(ends[step - 1] - (ends[step - 2] if step > 1 else 0))
    if len(deviations) < 2:
        return 0.0
    spread = math.sqrt(sum(d * d for d in deviations) / (len(deviations) - 1))
    steps_per_window = max(1.0, window / (sum(sizes) / len(sizes)))
    return 2 * math.sqrt(2) * spread / math.sqrt(steps_per_window)


def _largest_step(measurement: Measurement) -> int:
    """The most samples one step trained (over all processes)."""
    n = measurement.loss_samples
    return max((b - a for a, b in zip((0, *n), n, strict=False)), default=0)


def _steps_within(measurement: Measurement, horizon_s: float) -> int:
    limit = horizon_s * measurement.samples_per_s * (1 + 1e-9)
    return sum(1 for n in measurement.loss_samples if n <= limit)


def _too_flat(mine: LossRun, levels: int, margin: float, horizon: float) -> str | None:
    """Why your curve (``mine``, with ``levels`` levels) fell too little to tell the curves
    apart: less than ``MIN_DROP`` of its first loss, or than ``NOISE_FALLS`` times the noise
    ``margin``; None when it fell enough."""
    first = mine.curve[0].loss
    fell = first - mine.best_loss
    drop = fell / first if first > 0 else 0.0
    within = f"in the {horizon:.1f} s both trials trained"
    if drop < MIN_DROP or levels < 2:
        return (
            f"your training loss fell {drop:.0%} {within} ({MIN_DROP:.0%} needed to tell the "
            "curves apart)"
        )
    if fell < NOISE_FALLS * margin:
        return (
            f"your training loss fell {fell:.3g} {within}, {fell / margin:.1f}x the noise of "
            f"its stretches ({margin:.3g}; {NOISE_FALLS:g}x needed to tell the curves apart)"
        )
    return None


def curve_verdict(
    pick: Measurement,
    pick_config: TrainingConfig,
    yours: Measurement,
    user: TrainingConfig,
) -> GuardVerdict:
    """Whether the pick's trial kept pace with your setup's trial, on their own training
    loss curves (``how="guarded"``, ``decided_by="trials"``), or "unchecked" with the reason
    when the curves are too short or your loss did not fall enough to tell.

    Example:
        >>> fall = [2.0 / (1 + i / 10) for i in range(60)]
        >>> yours = Measurement("ok", samples_per_s=100.0, losses=tuple(fall),
        ...                     loss_samples=tuple(10 * (i + 1) for i in range(60)))
        >>> twice = replace(yours, samples_per_s=200.0)  # the same steps, twice as fast
        >>> curve_verdict(twice, None, yours, None).kept
        True
        >>> curve_verdict(yours, None, twice, None).kept  # half as fast: behind
        False
    """
    horizon = min(trained_s(pick), trained_s(yours))
    steps = min(_steps_within(pick, horizon), _steps_within(yours, horizon))
    points = min(CURVE_POINTS, steps // STEPS_PER_POINT)
    # One window of samples for both, so identical losses at other rates compare exactly;
    # your levels up to the common time, the pick's whole curve to reach them in. Each
    # window holds a whole step of either.
    yours_n = horizon * yours.samples_per_s
    window = max(yours_n / max(points, 1), _largest_step(pick), _largest_step(yours))
    if points < MIN_POINTS or yours_n < MIN_POINTS * window:
        return GuardVerdict(
            False,
            "unchecked",
            f"the trials' curves are too short to compare ({steps} steps of the shorter in "
            f"{horizon:.1f} s, {yours_n:,.0f} samples of yours against steps of up to "
            f"{window:,.0f}; {MIN_POINTS * STEPS_PER_POINT} steps and {MIN_POINTS} steps' "
            "samples needed)",
        )
    theirs = trial_run(pick, pick_config, horizon_s=trained_s(pick), window=window)
    mine = trial_run(yours, user, horizon_s=horizon, window=window, every=window)
    levels = target_levels(mine, find_plateau(mine.curve))
    # A level counts as reached within the noise of two window means (``noise_margin``).
    margin = noise_margin(yours, horizon, window)
    flat = _too_flat(mine, len(levels), margin, horizon)
    if flat is not None:
        return GuardVerdict(False, "unchecked", flat, yours=mine, pick=theirs)
    ratios = level_ratios(theirs, [replace(v, value=v.value + margin) for v in levels], horizon)
    worst = max(ratios)  # decides, within the noise
    pace = geometric_mean(level_ratios(theirs, levels, horizon))  # reported, as measured
    theirs = replace(theirs, pace=pace)
    span = f"over the {horizon:.1f} s both trials trained"
    if worst <= GUARD_TOLERANCE and pace <= 1.0:  # each level in time, and not behind overall
        line = (
            f"on the trials' own curves its training loss kept pace with yours {span}: it "
            f"reached each of your {len(levels)} levels (down to {levels[-1].value:.4g}) no "
            f"later than yours, within their noise of {margin:.3g} ({1 / pace:.2f}x your pace "
            "overall)"
        )
        return GuardVerdict(True, "guarded", line, pace, worst, mine, theirs, "trials")
    level = levels[ratios.index(worst)]
    late = f"it reached {level.value:.4g} {worst:.2f}x as late (yours at {level.seconds:.1f} s, "
    if worst <= GUARD_TOLERANCE:
        late = "each level in time, within their noise, but overall slower ("
    line = (
        f"on the trials' own curves its training loss fell behind yours {span}: {late}"
        f"{1 / pace:.2f}x your pace overall)"
    )
    return GuardVerdict(False, "guarded", line, pace, worst, mine, theirs, "trials")
