"""Held-out loss curves and what "sooner" means: levels to reach, the pace, the plateau.

Your setup's curve sets the *levels* to beat: each new best held-out loss up to where the
curve flattens (``target_levels``), or your named goal alone (``goal_level``). A candidate's
*pace* is the geometric mean, over the levels, of its time to each one divided by yours
(crossings interpolated between evaluations); yours is 1, 0.5 is twice as fast. A level it
never reaches counts as ``UNREACHED`` horizons, scaled by how far off it stayed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from statistics import geometric_mean
from typing import Any

from autoaccel.config import TrainingConfig
from autoaccel.errors import UsageError
from autoaccel.states import Outcome

__all__ = [
    "CurvePoint",
    "Goal",
    "Level",
    "LossRun",
    "Plateau",
    "find_plateau",
    "goal_level",
    "level_over_orders",
    "level_ratios",
    "pace_of",
    "target_levels",
]

#: Metric names whose direction is known (words of the name, e.g. ``val_accuracy``).
HIGHER_IS_BETTER = frozenset(
    {"accuracy", "acc", "f1", "auc", "auroc", "precision", "recall", "bleu", "rouge", "iou",
     "dice", "map", "top1", "top5", "r2", "score"}
)  # fmt: skip
LOWER_IS_BETTER = frozenset(
    {"loss", "error", "err", "perplexity", "ppl", "mse", "mae", "rmse", "wer", "cer", "nll"}
)
PLATEAU_TOLERANCE = 0.01  # relative improvement below which the curve counts as flat
PLATEAU_PATIENCE = 3  # evaluations without such an improvement
# A level counts once your setup has made this share of its progress from the untrained
# loss: dips before that are the untrained model's noise (HF example: 0.6837 against 0.6931
# untrained at 0.5 s, then flat for a second; a candidate 0.5 s later to it was "5x late").
MIN_PROGRESS = 0.1
UNREACHED = 2.0  # a level never reached counts as this many horizons (times how far off)


@dataclass(frozen=True)
class CurvePoint:
    """One held-out evaluation: after ``seconds`` of training and ``step`` optimizer steps
    (``metric``: your metric's value there, when you gave one)."""

    seconds: float
    step: int
    loss: float
    metric: float | None = None


@dataclass(frozen=True)
class Goal:
    """The held-out quality you aim for, when you name it: ``target`` of the held-out loss
    (reached at or below), or of ``metric(output, target)`` averaged over the held-out
    samples (a script's: the value its ``evaluate`` hook reports under that name). A metric
    whose name says its direction (``known_higher``: accuracy up, error down) is read so,
    and a target the untrained model already meets that way is refused; any other counts
    as higher-is-better when the untrained model scores below the target, else as
    lower-is-better."""

    target: float
    metric: Callable[[Any, Any], Any] | str | None = None  # a script's metric: its name
    name: str = "held-out loss"

    @property
    def known_higher(self) -> bool | None:
        """Whether the metric's name says higher is better (accuracy, F1, AUC, ...: True),
        lower (error, perplexity, MSE, ...: False), or neither (None: the untrained score
        decides).

        Example:
            >>> Goal(0.9, "val_accuracy", "val_accuracy").known_higher, Goal(5, "ppl").known_higher
            (True, False)
        """
        if self.metric is None:
            return False  # the held-out loss
        words = set(re.split(r"[^a-z0-9]+", self.name.lower()))
        if words & HIGHER_IS_BETTER:
            return True
        if words & LOWER_IS_BETTER:
            return False
        return None

    def check_untrained(
        self, loss: float, value: float | None, source: str, *, spelled: str = "target="
    ) -> None:
        """Refuse a goal that the untrained model's held-out ``loss`` (or metric ``value``)
        already meets: there is nothing to reach sooner.

        Raises:
            UsageError: naming the target, the untrained score and where it was scored.
        """
        untrained = loss if value is None else value
        higher = self.known_higher
        met = untrained == self.target or (
            higher is not None
            and (untrained >= self.target if higher else untrained <= self.target)
        )
        if met:
            raise UsageError(
                f"{spelled}{self.target:g}: the untrained model already scores "
                f"{untrained:.4g} ({self.name}, {source}); give a target it has to learn to "
                "reach"
            )


@dataclass(frozen=True)
class LossRun:
    """One candidate trained for the horizon: its held-out loss curve and how it ended."""

    config: TrainingConfig
    outcome: Outcome  # ok | pruned | diverged | oom | error
    message: str = ""
    curve: tuple[CurvePoint, ...] = ()
    number: int | None = None
    label: str = ""
    start_loss: float | None = None  # held-out loss of the untrained model (at 0 s)
    pace: float = math.inf  # time to the levels / your setup's time (see ``pace_of``)
    start_metric: float | None = None  # your metric's value for the untrained model
    paces: tuple[float, ...] = ()  # each run's pace, when trained again (the final round)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", Outcome(self.outcome))

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    @property
    def final(self) -> float:
        return self.curve[-1].loss if self.curve else math.inf

    @property
    def best_loss(self) -> float:
        return min((p.loss for p in self.curve), default=math.inf)

    @property
    def speedup(self) -> float | None:
        """How many times sooner than your setup it reaches the same losses (1 / pace)."""
        return 1 / self.pace if 0 < self.pace < math.inf else None

    def time_to(self, loss: float, *, metric: bool = False, higher: bool = False) -> float | None:
        """Training seconds until the held-out loss first reached ``loss`` (None: never),
        interpolated linearly between the evaluations (and from the untrained model's loss
        at 0 s when known). ``metric``: the same for the metric's values, reached at or
        above ``loss`` when ``higher``."""
        sign = -1.0 if higher else 1.0  # compared as "lower is better"
        start = self.start_metric if metric else self.start_loss
        points: list[tuple[float, float | None]] = [(0.0, start)]
        points += [(p.seconds, p.metric if metric else p.loss) for p in self.curve]
        goal = sign * loss
        before: tuple[float, float] | None = None
        for seconds, raw in points:
            if raw is None:
                continue
            value = sign * raw
            if value <= goal:
                if before is None or before[1] <= goal:
                    return seconds
                t0, l0 = before
                return t0 + (seconds - t0) * (l0 - goal) / (l0 - value)
            before = (seconds, value)
        return None


@dataclass(frozen=True)
class Level:
    """A held-out value your setup reached, and when (training seconds): a loss, or your
    metric's value when ``metric`` (reached at or above it when ``higher``)."""

    value: float
    seconds: float
    metric: bool = False
    higher: bool = False

    def time_in(self, run: LossRun) -> float | None:
        """Training seconds ``run`` took to reach this level (None: never)."""
        return run.time_to(self.value, metric=self.metric, higher=self.higher)

    def score(self, point: CurvePoint) -> float:
        """The point's value on this level's scale, lower is better (for the pruner)."""
        raw = point.metric if self.metric else point.loss
        if raw is None:
            return math.inf
        return -raw if self.higher else raw

    def reached(self, point: CurvePoint) -> bool:
        return self.score(point) <= (-self.value if self.higher else self.value)

    def shortfall(self, run: LossRun) -> float:
        """How far ``run``'s best value stayed from this level, as a ratio (1: reached it)."""
        values = [p.metric if self.metric else p.loss for p in run.curve]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if not finite:
            return UNREACHED
        best = max(finite) if self.higher else min(finite)
        worse, better = (self.value, best) if self.higher else (best, self.value)
        return max(1.0, worse / better) if worse > 0 and better > 0 else UNREACHED


def target_levels(baseline: LossRun, plateau: Plateau | None) -> list[Level]:
    """The losses to reach sooner: every new best loss of your setup's curve up to its
    plateau (the whole horizon without one), so the pace weighs every stage of training
    alike, whichever loss you aim for. Only losses below the untrained model's count: none
    means your setup did not learn. With the untrained loss known, only those past the first
    ``MIN_PROGRESS`` of your setup's progress from it count (the rest is noise).

    Example:
        >>> pts = [CurvePoint(i + 1.0, i, l) for i, l in enumerate([1.0, 0.5, 0.6, 0.3])]
        >>> [(v.value, v.seconds) for v in target_levels(LossRun(None, "ok", "", pts), None)]
        [(1.0, 1.0), (0.5, 2.0), (0.3, 4.0)]
        >>> flat_start = LossRun(None, "ok", "", pts, start_loss=1.01)  # 1.0: a 1% dip
        >>> [v.value for v in target_levels(flat_start, None)]
        [0.5, 0.3]
    """
    end = plateau.seconds if plateau is not None else baseline.curve[-1].seconds
    within = [p for p in baseline.curve if p.seconds <= end]
    levels: list[Level] = []
    best = math.inf
    if baseline.start_loss is not None and within:
        lowest = min(p.loss for p in within)
        best = baseline.start_loss - MIN_PROGRESS * max(0.0, baseline.start_loss - lowest)
    for point in within:
        if point.loss < best:  # a new best, past the untrained model's loss and its noise
            best = point.loss
            levels.append(Level(best, baseline.time_to(best) or point.seconds))
    return levels


def goal_level(baseline: LossRun, goal: Goal) -> Level | None:
    """Your goal as the one level to reach sooner, at your setup's time to it (None: your
    setup did not reach it in its run).

    Example:
        >>> pts = [CurvePoint(2.0, 9, 0.5, 0.6), CurvePoint(4.0, 19, 0.4, 0.9)]
        >>> yours = LossRun(None, "ok", "", tuple(pts), start_loss=1.0, start_metric=0.1)
        >>> goal_level(yours, Goal(0.75, metric=max, name="accuracy"))
        Level(value=0.75, seconds=3.0, metric=True, higher=True)
    """
    metric = goal.metric is not None
    start = baseline.start_metric if metric else baseline.start_loss
    higher = goal.known_higher
    if higher is None:  # a name that says nothing: the untrained score says which way
        higher = metric and start is not None and start < goal.target
    level = Level(goal.target, 0.0, metric, higher)
    took = level.time_in(baseline)
    return replace(level, seconds=took) if took else None


def level_over_orders(level: Level, runs: Sequence[LossRun], cap_s: float) -> Level:
    """``level`` at the geometric mean of your times to it in ``runs`` (one per data order;
    a run that missed it counts ``cap_s``, the most it trained): a noisy metric's first
    touch of a goal varies several-fold between data orders (3x on the reference CNN).

    Example:
        >>> level = Level(0.95, 9.0, metric=True, higher=True)
        >>> runs = [LossRun(None, "ok", "", (CurvePoint(s, 9, 0.5, 0.96),)) for s in (9.0, 4.0)]
        >>> level_over_orders(level, runs, cap_s=18.0).seconds
        6.0
    """
    times = [level.time_in(run) or cap_s for run in runs]
    return replace(level, seconds=round(geometric_mean(times), 6)) if times else level


def pace_of(run: LossRun, levels: Sequence[Level], horizon_s: float) -> float:
    """Geometric mean over ``levels`` of (run's time to the level / your setup's time).

    A level the run never reached counts as ``UNREACHED`` horizons, scaled by how far its
    best value stayed from the level, so runs that miss still rank by how close they came.

    Example:
        >>> pts = [CurvePoint(i + 1, i, l) for i, l in enumerate([1.0, 0.5, 0.4, 0.3])]
        >>> fast = LossRun(None, "ok", "", tuple(CurvePoint(p.seconds / 2, 0, p.loss) for p in pts))
        >>> round(pace_of(fast, [Level(0.5, 2.0), Level(0.3, 4.0)], 4.0), 3)
        0.5
    """
    if not levels or not run.curve:
        return math.inf
    return geometric_mean(level_ratios(run, levels, horizon_s))


def level_ratios(run: LossRun, levels: Sequence[Level], horizon_s: float) -> list[float]:
    """For each level: the run's time to it over your setup's (a miss counts as in
    ``pace_of``); all at most 1 means the run was never behind yours.

    Example:
        >>> pts = [CurvePoint(1.0, 0, 0.9), CurvePoint(2.0, 0, 0.3)]
        >>> late_then_fast = LossRun(None, "ok", "", tuple(pts))
        >>> levels = [Level(0.9, 0.5), Level(0.3, 4.0)]
        >>> level_ratios(late_then_fast, levels, 4.0)
        [2.0, 0.5]
    """
    ratios = []
    for level in levels:
        took = level.time_in(run)
        if took is None:
            took = UNREACHED * horizon_s * level.shortfall(run)
        ratios.append(max(took, 1e-6) / level.seconds)
    return ratios


@dataclass(frozen=True)
class Plateau:
    """Where a held-out curve stopped improving, and the rule that says so."""

    step: int
    seconds: float
    loss: float
    last_step: int
    tolerance: float
    patience: int

    def __str__(self) -> str:
        return (
            f"the held-out loss flattened at step {self.step} ({self.seconds:.1f} s, loss "
            f"{self.loss:.4g}): it improved by less than {self.tolerance:.0%} over the next "
            f"{self.patience}+ evaluations up to step {self.last_step}"
        )


def find_plateau(
    curve: Sequence[CurvePoint],
    *,
    tolerance: float = PLATEAU_TOLERANCE,
    patience: int = PLATEAU_PATIENCE,
) -> Plateau | None:
    """The first point after which the curve never improves by ``tolerance`` (relative) on
    the best loss so far, with at least ``patience`` evaluations after it; None otherwise.

    Example:
        >>> pts = [CurvePoint(i, 10 * i, l) for i, l in enumerate([2, 1, .5, .499, .498, .5])]
        >>> find_plateau(pts).step
        20
    """
    for i, point in enumerate(curve[:-patience] if patience else curve):
        best = min(p.loss for p in curve[: i + 1])
        later = [p.loss for p in curve[i + 1 :]]
        if len(later) >= patience and min(later) > best * (1 - tolerance):
            return Plateau(
                point.step, point.seconds, point.loss, curve[-1].step, tolerance, patience
            )
    return None
