"""Convergence-aware tuning: which setup gets to a low held-out loss soonest.

More samples per second is worthless if the model learns worse per second. After the
throughput search has found the fastest system settings, a second Optuna study searches
batch size, peak LR, warm-up, decay shape and length, and momentum. The decay lasts half,
once or twice your setup's time to the last level (a schedule that has annealed by then
gets there sooner than one spread over the horizon). The peak LR is searched on a log
scale around the middle of two anchors, each moved to the candidate's batch by the
batch-size rule: your own LR, and the LR range test's suggestion when it is confident
(the test runs at the tuned batch when its sweep fits the time, else at yours).

Your own setup is trained first, for the *horizon*, with its held-out loss taken at 12 even
checkpoints (evaluation time is not counted as training time). The losses it reaches on
its way, up to where its curve flattens, are the *levels* to beat: each new best loss, so
every stage of training counts alike (the tool does not know which loss you aim for).
Every candidate trains a fresh copy and is scored by its *pace*: the geometric mean, over
the levels, of the time it needs to reach each one divided by the time your setup needed
(crossings interpolated between checkpoints). Your setup's pace is 1; 0.5 means twice as
fast to the same losses. A candidate stops as soon as it has reached the lowest level, so
fast ones cost little, and at twice your time to it at most; a level it never reaches
counts as twice that training time (more, the further off it ended). Its held-out loss at
each checkpoint goes to Optuna's SuccessiveHalving pruner, so clearly slower candidates
stop early.

When you name a goal (``target=``: a held-out loss, or a value of your ``metric`` such as
accuracy) and your setup reaches it within the horizon, that goal is the one level: the
pace is the time to it over your setup's time.

The search's best is the luckiest of many candidates, each trained once. In a final round
the best (up to 3) are trained again on other data orders (up to 2, as fit in 30% of the
budget), and your setup too, for the times to beat on each; the pick is the soonest over
all its runs. It is then trained for the whole horizon on yet another order: that run's
pace is the figure reported (your setup is kept if the pick was not sooner over all its
runs), and its curve tells where to stop early.

The held-out loss is the validation set's when one is given, else that of training samples
held out before any training (they are never trained on).
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from statistics import geometric_mean
from typing import Any

import optuna
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from rich.console import Console
from torch.utils.data import Subset, TensorDataset

from autoaccel.config import SCHEDULES, TrainingConfig
from autoaccel.data import DataSpec, batch_samples, build_loader, describe_data, move_batch
from autoaccel.errors import DataError, UsageError
from autoaccel.measure import classify_failure
from autoaccel.run import Run, applied_settings
from autoaccel.schedule import (
    LrFinding,
    RangeSweep,
    apply_lr,
    apply_momentum,
    build_scheduler,
    lr_multiplier,
    momentum_of,
    scaling_rule,
    sweep_config,
)
from autoaccel.search import storage_url
from autoaccel.space import powers_of_two
from autoaccel.trial import LossPlan, Workload

__all__ = [
    "EVALS",
    "ConvergenceResult",
    "CurvePoint",
    "Goal",
    "Holdout",
    "LossRun",
    "Plateau",
    "check_goal",
    "final_plan",
    "find_lr",
    "find_plateau",
    "goal_level",
    "holdout_split",
    "search_schedule",
    "train_for",
]

EVALS = 12  # held-out evaluations per candidate (the pruner's rungs sit on them)
# With a goal, evaluated this often instead: a noisy metric (accuracy) first touches the
# goal between sparse evaluations, and evaluating as often as you would finds it there.
GOAL_EVALS = 40
MAX_EVALS = 120  # at most, for the pick's run over the whole horizon
HOLDOUT_FRACTION = 0.1
HOLDOUT_MAX = 2048  # samples held out from training when there is no validation set
EVAL_BATCH = 512
WARMUP_FRACTIONS = (0.0, 0.05, 0.1, 0.2)  # of the steps the decay spans
DECAY_SPANS = (0.5, 1.0, 2.0)  # the decay's length, in multiples of your time to the last level
MOMENTA = (0.8, 0.9, 0.95, 0.99)
LR_SPREAD = 4.0  # peak LR searched from 1/4x to 4x the middle, at least
SWEEP_STEPS = 100  # steps of the LR range test
CANDIDATE_CAP = 2.0  # a candidate trains at most this many times your time to your loss
PLATEAU_TOLERANCE = 0.01  # relative improvement below which the curve counts as flat
PLATEAU_PATIENCE = 3  # evaluations without such an improvement
UNREACHED = 2.0  # a level never reached counts as this many horizons (times how far off)
# The final round, (finalists, other data orders) by preference: the best candidates and
# your setup trained again on other data orders, in at most a share of the study's budget.
FINAL_PLANS = ((3, 2), (2, 2), (2, 1), (1, 1))
FINAL_SHARE = 0.3


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
    samples. A metric counts as higher-is-better when the untrained model scores below
    the target (accuracy), else as lower-is-better (an error rate)."""

    target: float
    metric: Callable[[Any, Any], Any] | None = None
    name: str = "held-out loss"


@dataclass(frozen=True)
class LossRun:
    """One candidate trained for the horizon: its held-out loss curve and how it ended."""

    config: TrainingConfig
    outcome: str  # ok | pruned | diverged | oom | error
    message: str = ""
    curve: tuple[CurvePoint, ...] = ()
    number: int | None = None
    label: str = ""
    start_loss: float | None = None  # held-out loss of the untrained model (at 0 s)
    pace: float = math.inf  # time to the levels / your setup's time (see ``pace_of``)
    start_metric: float | None = None  # your metric's value for the untrained model
    paces: tuple[float, ...] = ()  # each run's pace, when trained again (the final round)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

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
    means your setup did not learn.

    Example:
        >>> pts = [CurvePoint(i + 1.0, i, l) for i, l in enumerate([1.0, 0.5, 0.6, 0.3])]
        >>> [(v.value, v.seconds) for v in target_levels(LossRun(None, "ok", "", pts), None)]
        [(1.0, 1.0), (0.5, 2.0), (0.3, 4.0)]
    """
    end = plateau.seconds if plateau is not None else baseline.curve[-1].seconds
    levels: list[Level] = []
    best = math.inf if baseline.start_loss is None else baseline.start_loss
    for point in baseline.curve:
        if point.seconds > end:
            break
        if point.loss < best:  # below the untrained model's loss, and a new best
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
    higher = metric and start is not None and start < goal.target
    level = Level(goal.target, 0.0, metric, higher)
    took = level.time_in(baseline)
    return replace(level, seconds=took) if took else None


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
    ratios = []
    for level in levels:
        took = level.time_in(run)
        if took is None:
            took = UNREACHED * horizon_s * level.shortfall(run)
        ratios.append(max(took, 1e-6) / level.seconds)
    return geometric_mean(ratios)


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


class Holdout:
    """The samples the loss is scored on, and how to score a model on them."""

    def __init__(self, spec: DataSpec, source: str) -> None:
        self.spec = spec
        self.source = source
        size = min(EVAL_BATCH, len(spec))
        self._config = TrainingConfig(batch_size=size)

    def evaluate(
        self, run: Run, loss_plan: LossPlan, metric: Callable[[Any, Any], Any] | None = None
    ) -> tuple[float, float | None]:
        """(mean loss, mean metric or None) over every held-out sample (eval mode, no
        gradients). The metric is ``metric(model(*inputs), target)`` per batch.

        Raises:
            DataError: the metric fails or does not give one number (only with a metric).
        """
        model = run.model
        model.eval()
        total, scored, count = 0.0, 0.0, 0
        try:
            with torch.no_grad():
                for batch in build_loader(self.spec, self._config):
                    batch = move_batch(batch, run.device)
                    with run.autocast():
                        loss = loss_plan(model, batch)
                        if metric is not None:
                            scored += _metric_value(metric, model, batch) * batch_samples(batch)
                    n = batch_samples(batch)
                    total += float(loss) * n
                    count += n
        finally:
            model.train()
        return total / max(count, 1), (scored / max(count, 1) if metric is not None else None)


def _metric_value(metric: Callable[[Any, Any], Any], model: Any, batch: Any) -> float:
    """``metric(model(*inputs), target)`` as a float."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise DataError(
            "metric= needs batches of (inputs..., target) to call metric(output, target); "
            "leave metric out and give target= as a held-out loss instead"
        )
    output = model(*batch[:-1])
    try:
        value = metric(output, batch[-1])
    except Exception as error:
        raise DataError(
            f"metric(output, target) failed: {str(error).splitlines()[0]}; it gets the "
            "model's output and the batch's target, as loss_fn does"
        ) from error
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise DataError(
            f"metric(output, target) must give one number (e.g. the batch's mean accuracy), "
            f"got {type(value).__name__}: {str(error).splitlines()[0]}"
        ) from error


def check_goal(workload: Workload, train: DataSpec, holdout: Holdout, goal: Goal) -> Goal:
    """``goal``, checked on the untrained model before any work.

    Raises:
        DataError: the metric fails on the held-out batches or gives no single number.
        UsageError: the untrained model already reaches the target.
    """
    run = _prepared(workload, workload.user_config(), train)
    try:
        loss, value = holdout.evaluate(run, workload.loss, goal.metric)
    finally:
        run.close()
    untrained = loss if value is None else value
    if (goal.metric is None and untrained <= goal.target) or untrained == goal.target:
        raise UsageError(
            f"target={goal.target:g}: the untrained model already scores {untrained:.4g} "
            f"({goal.name}, {holdout.source}); give a target it has to learn to reach"
        )
    return goal


def holdout_split(
    spec: DataSpec,
    val_data: Any = None,
    *,
    val_loader_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
) -> tuple[DataSpec, Holdout]:
    """(what to train on, what to score on): the validation set when given, else training
    samples held out (10%, at most 2,048, at least one batch).

    Raises:
        DataError: a validation set smaller than one batch, or too little data to hold any
            out.
    """
    if val_data is not None:
        val = describe_data(val_data, loader_kwargs=val_loader_kwargs)
        if len(val) < spec.batch_size:
            raise DataError(
                f"the validation set has {len(val)} samples, fewer than one batch "
                f"({spec.batch_size}): its loss would be too noisy to rank setups; give at "
                "least one batch of samples, or leave val_data out to hold out training samples"
            )
        return spec, Holdout(val, f"the validation set ({len(val):,} samples)")
    n = len(spec)
    held = max(min(int(n * HOLDOUT_FRACTION), HOLDOUT_MAX), spec.batch_size)
    if held > n // 2:
        raise DataError(
            f"{n} training samples are too few to hold {held} out for scoring the loss; "
            "pass val_data, or use objective='throughput'"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    scored, trained = order[:held], order[held:]
    if spec.tensors is not None:
        kept = tuple(t[trained] for t in spec.tensors)
        out = tuple(t[scored] for t in spec.tensors)
        train = replace(spec, dataset=TensorDataset(*kept), tensors=kept)
        holdout = replace(spec, dataset=TensorDataset(*out), tensors=out, shuffle=False)
    else:
        train = replace(spec, dataset=Subset(spec.dataset, trained.tolist()), sampler=None)
        holdout = replace(
            spec, dataset=Subset(spec.dataset, scored.tolist()), sampler=None, shuffle=False
        )
    return train, Holdout(holdout, f"{held:,} training samples held out (never trained on)")


def _prepared(
    workload: Workload, config: TrainingConfig, train: DataSpec, seed: int | None = None
) -> Run:
    """A fresh copy of the model, set up with ``config`` (LR, momentum and schedule), its
    data order and random draws (dropout, augmentation) from ``seed`` (default: the
    workload's)."""
    seed = workload.seed if seed is None else seed
    torch.manual_seed(seed)
    model, optimizer = workload.fresh()
    if config.lr is not None:
        apply_lr(optimizer, config.lr)
    if config.momentum is not None:
        apply_momentum(optimizer, config.momentum)
    generator = torch.Generator().manual_seed(seed)
    loader = build_loader(train, config, generator=generator)
    return Run(
        model,
        optimizer,
        config,
        loader=loader,
        scheduler=build_scheduler(optimizer, config),
        device=workload.device,
    )


def _batches(run: Run) -> Any:
    """Epoch after epoch of the run's loader."""
    while True:
        got = False
        for batch in run.loader:
            got = True
            yield batch
        if not got:
            raise DataError("an epoch gave no batch: the dataset is smaller than one batch")


def train_for(
    workload: Workload,
    config: TrainingConfig,
    train: DataSpec,
    holdout: Holdout,
    *,
    seconds: float,
    evals: int = EVALS,
    max_steps: int | None = None,
    on_eval: Callable[[int, CurvePoint], bool] | None = None,
    stop_at: Level | None = None,
    start: tuple[float | None, float | None] | None = None,
    metric: Callable[[Any, Any], Any] | None = None,
    seed: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> LossRun:
    """Train a fresh copy with ``config`` for ``seconds`` of training time, scoring the
    held-out loss ``evals`` times at even intervals.

    Never raises for a failing configuration: a diverging loss, OOM or a crash come back as
    the run's ``outcome``; ``on_eval(k, point)`` returning True prunes it.

    Args:
        max_steps: Stop after this many optimizer steps instead (then evaluated once).
        stop_at: Stop (as done, "ok") once an evaluation reaches this level.
        start: The untrained model's held-out (loss, metric), when the caller knows it
            (the same for every candidate); the run's curve starts there at 0 s.
        metric: Also score ``metric(output, target)`` at each evaluation.
        seed: Seeds the data order and random draws (default: the workload's).
    """
    cuda = workload.device.type == "cuda"
    curve: list[CurvePoint] = []
    run: Run | None = None
    gc.collect()

    def ended(outcome: str, message: str = "") -> LossRun:
        loss, value = start or (None, None)
        return LossRun(config, outcome, message, tuple(curve), start_loss=loss, start_metric=value)

    try:
        with applied_settings(config):
            run = _prepared(workload, config, train, seed)
            if start is None and max_steps is None:
                start = holdout.evaluate(run, workload.loss, metric)
            batches = _batches(run)
            paused = 0.0
            began = clock()
            k = 0
            while k < evals:
                batch = next(batches)
                with run.autocast():
                    loss = workload.loss(run.model, batch)
                run.backward(loss)
                run.step()
                if max_steps is not None:
                    if run.optimizer_steps < max_steps:
                        continue
                    evals = k + 1
                elif clock() - began - paused < seconds * (k + 1) / evals:
                    continue
                if cuda:
                    torch.cuda.synchronize()
                trained_s = clock() - began - paused
                scoring = clock()
                held, value = holdout.evaluate(run, workload.loss, metric)
                paused += clock() - scoring
                point = CurvePoint(trained_s, run.optimizer_steps, held, value)
                curve.append(point)
                last = float(loss.detach())
                if not (math.isfinite(held) and math.isfinite(last)):
                    return ended(
                        "diverged",
                        f"the loss became {held if not math.isfinite(held) else last} "
                        f"by step {run.optimizer_steps}",
                    )
                k += 1
                if stop_at is not None and stop_at.reached(point):
                    return ended("ok", f"reached {stop_at.value:.4g} at evaluation {k} of {evals}")
                if on_eval is not None and k < evals and on_eval(k, point):
                    return ended("pruned", f"stopped at evaluation {k} of {evals}")
    except Exception as error:  # every failure is a finding about this config
        return ended(*classify_failure(error))
    finally:
        if run is not None:
            run.close()
        gc.collect()
    return ended("ok")


def find_lr(
    workload: Workload,
    config: TrainingConfig,
    train: DataSpec,
    *,
    min_lr: float = 1e-6,
    max_lr: float = 10.0,
    steps: int = 100,
    max_s: float = 60.0,
) -> LrFinding:
    """Smith's LR range test at ``config``'s batch size, on a fresh copy of the model (the
    caller's model and optimizer are never touched)."""
    sweep = RangeSweep(min_lr=min_lr, max_lr=max_lr, steps=steps)
    with applied_settings(config):
        run = _prepared(workload, sweep_config(config), train)
        try:
            batches = _batches(run)
            ends = time.monotonic() + max_s
            while True:
                apply_lr(run.optimizer, sweep.lr)
                with run.autocast():
                    loss = workload.loss(run.model, next(batches))
                run.backward(loss)
                run.step()
                if sweep.record(float(loss.detach())):
                    break
                if time.monotonic() > ends:
                    sweep.stop = f"stopped after {max_s:.0f} s at lr {sweep.lr:.3g}"
                    break
        finally:
            run.close()
    return sweep.finding()


@dataclass
class ConvergenceResult:
    """The schedule study's answer, with the evidence for it."""

    baseline: LossRun
    best: LossRun
    runs: list[LossRun]
    finding: LrFinding | None
    rule: str
    rule_reason: str
    horizon_s: float
    holdout: str
    study_name: str
    stop_reason: str
    plateau: Plateau | None = None
    notes: list[str] = field(default_factory=list)
    levels: list[Level] = field(default_factory=list)
    check: LossRun | None = None  # the pick measured again for the whole horizon
    baseline_plateau: Plateau | None = None  # where your setup's curve flattened
    aim: str = ""  # what the levels are, in words ("accuracy 0.95 (your goal)", ...)

    @property
    def time_to_baseline_loss(self) -> float | None:
        """Training seconds the best needs to reach the last level (your goal, or your
        setup's loss where its curve flattened or at the end of the horizon)."""
        return self.levels[-1].time_in(self.best) if self.levels else None

    @property
    def speedup(self) -> float | None:
        """How many times sooner the pick reaches your setup's losses: measured again
        for the whole horizon when it was, else as the search measured it."""
        if self.check is not None and self.check.ok and self.best is not self.baseline:
            return self.check.speedup
        return self.best.speedup


def _steps_per_s(config: TrainingConfig, rates: dict[int, float]) -> float:
    """Optimizer steps per second at this batch size, from the measured samples/s (of the
    nearest measured batch size when this one was not measured)."""
    nearest = min(rates, key=lambda b: abs(math.log(b / config.batch_size)))
    return rates.get(config.batch_size, rates[nearest]) / config.global_batch


def _horizon_steps(config: TrainingConfig, rates: dict[int, float], seconds: float) -> int:
    """Optimizer steps ``seconds`` of training hold at this batch size."""
    return max(1, int(seconds * _steps_per_s(config, rates)))


def search_schedule(
    workload: Workload,
    train: DataSpec,
    holdout: Holdout,
    system: TrainingConfig,
    user: TrainingConfig,
    rates: dict[int, float],
    *,
    budget_s: float,
    horizon_s: float,
    storage: str | None,
    study_name: str,
    seed: int | None,
    console: Console | None = None,
    fastest: dict[int, TrainingConfig] | None = None,
    goal: Goal | None = None,
) -> ConvergenceResult:
    """Search batch size, peak LR, warm-up, decay and momentum for the soonest to reach your
    setup's held-out losses (see the module's docstring).

    Args:
        system: The throughput search's pick (its batch is the "fast" one).
        rates: Measured samples/s by batch size (from the throughput search), to size each
            candidate's schedule to the steps the horizon holds.
        fastest: The fastest measured system settings at each batch size; a candidate
            trains with those of its batch size (the nearest measured one). Default:
            ``system``'s at every batch size.
        goal: The held-out loss or metric value you aim for: when your setup reaches it
            in the horizon, the pace is the time to it alone (else to your setup's losses).
    """
    started = time.monotonic()
    _, optimizer = workload.fresh()
    rule, rule_reason = scaling_rule(optimizer)
    momentum = momentum_of(optimizer)
    user_lr = float(optimizer.param_groups[0]["lr"])

    def say(text: str) -> None:
        if console:
            console.print(f"autoaccel: {text}", highlight=False, soft_wrap=True)

    metric = goal.metric if goal is not None else None
    say(f"time-to-loss: training your setup for {horizon_s:.0f} s ({holdout.source})")
    baseline = train_for(workload, user, train, holdout, seconds=horizon_s, metric=metric)
    start = (baseline.start_loss, baseline.start_metric) if baseline.ok else None
    flattened = find_plateau(baseline.curve) if baseline.ok else None
    levels = target_levels(baseline, flattened) if baseline.ok else []
    notes = []
    aim = "your setup's held-out losses " + ", ".join(f"{v.value:.4g}" for v in levels)
    evals = EVALS
    if goal is not None and baseline.ok:
        aimed = goal_level(baseline, goal)
        if aimed is not None:
            # Your time to it again, evaluated as often as a candidate is: the horizon's
            # evaluations lie too far apart for a goal reached early.
            again = train_for(
                workload,
                user,
                train,
                holdout,
                seconds=min(horizon_s, CANDIDATE_CAP * aimed.seconds),
                evals=GOAL_EVALS,
                stop_at=aimed,
                start=start,
                metric=metric,
            )
            aimed = replace(aimed, seconds=aimed.time_in(again) or aimed.seconds)
            levels = [aimed]
            evals = GOAL_EVALS
            aim = f"{goal.name} {goal.target:g} (your goal)"
        else:
            notes.append(
                f"your setup did not reach {goal.name} {goal.target:g} in {horizon_s:.0f} s "
                "of training: candidates were ranked by how soon they reach its held-out "
                "losses instead (a longer horizon_s would let it)"
            )
    # Your pace is 1 by definition: the levels are your times (to a goal, from the run
    # evaluated as often as a candidate; its horizon run crossed it between coarser ones).
    baseline = replace(baseline, label="your setup", pace=1.0 if levels else math.inf)
    say(f"  your setup: {_outcome(baseline)}")
    if levels:
        say(
            f"  to reach sooner: {aim} (yours at {', '.join(f'{v.seconds:.1f}' for v in levels)} s)"
        )
    # The range test at the tuned batch when its sweep fits the time, else at yours (a
    # sweep cut short never finds the loss minimum).
    sweep_s = max(10.0, horizon_s)
    tested = system
    if SWEEP_STEPS / _steps_per_s(system, rates) > sweep_s:
        tested = replace(system, batch_size=user.batch_size, grad_accum_steps=user.grad_accum_steps)
    finding = find_lr(workload, tested, train, steps=SWEEP_STEPS, max_s=sweep_s)
    say(f"LR range test at batch {tested.batch_size}: {finding}")
    # LRs are searched around two anchors, each moved to a candidate's batch by the rule:
    # your own LR, and the range test's suggestion when it is sure of it.
    anchors = [(user_lr, user.global_batch)]
    if finding.suggestion is not None and finding.confidence == "high":
        anchors.append((finding.suggestion, tested.global_batch))
    at_user = [lr * lr_multiplier(rule, b, user.global_batch) for lr, b in anchors]
    center_at_user = math.sqrt(min(at_user) * max(at_user))  # the geometric middle
    spread = max(LR_SPREAD, 2 * math.sqrt(max(at_user) / min(at_user)))

    # Every batch size the throughput search ran without failing, and smaller ones down to
    # a quarter of yours: on a CPU smaller batches cost little per sample and take more steps.
    batches = sorted({*rates, *powers_of_two(max(1, user.batch_size // 4), max(rates))})
    distributions: dict[str, Any] = {
        "batch_size": CategoricalDistribution(batches),
        "lr_scale": FloatDistribution(1 / spread, spread, log=True),
        "warmup": CategoricalDistribution(WARMUP_FRACTIONS),
        "schedule": CategoricalDistribution(SCHEDULES),
    }
    if momentum is not None:
        distributions["momentum"] = CategoricalDistribution(MOMENTA)
    if levels:  # how long the decay lasts, in multiples of your time to the last level
        distributions["decay_span"] = CategoricalDistribution(DECAY_SPANS)

    settings = fastest or {system.batch_size: system}

    def center_lr(config: TrainingConfig) -> float:
        """The middle of the searched LRs, moved to the config's global batch by the rule."""
        return center_at_user * lr_multiplier(rule, user.global_batch, config.global_batch)

    def config_of(params: dict[str, Any]) -> TrainingConfig:
        batch = int(params["batch_size"])
        nearest = min(settings, key=lambda b: abs(math.log(b / batch)))
        shaped = replace(settings[nearest], batch_size=batch)
        # The decay ends after a multiple of your time to the last level (a schedule that
        # anneals by then gets there sooner than one spread over the horizon), or with the
        # horizon when there are no levels.
        span_s = params["decay_span"] * levels[-1].seconds if "decay_span" in params else horizon_s
        steps = _horizon_steps(shaped, rates, min(horizon_s, span_s))
        return replace(
            shaped,
            lr=float(f"{center_lr(shaped) * params['lr_scale']:.4g}"),
            momentum=params.get("momentum"),
            warmup_steps=round(params["warmup"] * steps),
            schedule=params["schedule"],
            schedule_steps=steps,
            lr_scaling="none",
        )

    study = optuna.create_study(
        study_name=study_name,
        storage=storage_url(storage),
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4),
        # The first rung a quarter of the way: held-out losses this early are noisy.
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=evals // 4, reduction_factor=2),
        load_if_exists=True,
    )
    start_momentum = {"momentum": _nearest(momentum[1], MOMENTA)} if momentum else {}
    # Your LR (moved by the rule) as a multiple of the middle of the searched range.
    yours = float(f"{user_lr / center_at_user:.4g}")
    mine, fast = _nearest(user.batch_size, batches), system.batch_size
    first: list[dict[str, Any]] = [  # the middle and your LR, each at both batch sizes
        {"batch_size": mine, "warmup": 0.1, "schedule": "one-cycle"},
        {"batch_size": mine, "warmup": 0.0, "schedule": "constant", "lr_scale": yours},
        {"batch_size": fast, "warmup": 0.05, "schedule": "constant", "lr_scale": yours},
        {"batch_size": fast, "warmup": 0.1, "schedule": "one-cycle"},
        {"batch_size": mine, "warmup": 0.05, "schedule": "cosine", "decay_span": 2.0},
        {"batch_size": fast, "warmup": 0.05, "schedule": "cosine", "decay_span": 2.0},
    ]
    if len(at_user) > 1:  # Smith's one-cycle recipe: the range test's LR as the peak
        suggested = float(f"{at_user[1] / center_at_user:.4g}")
        first.insert(
            1, {"batch_size": mine, "warmup": 0.1, "schedule": "one-cycle", "lr_scale": suggested}
        )
    span = {"decay_span": 1.0} if levels else {}
    for params in first:
        if not levels:
            params.pop("decay_span", None)
        study.enqueue_trial(
            {"lr_scale": 1.0, **span, **params, **start_momentum}, skip_if_exists=True
        )
    # A candidate that has not reached your lowest level in CANDIDATE_CAP x your time to it
    # cannot be much sooner: it stops there (its pace counts the miss).
    candidate_s = min(horizon_s, CANDIDATE_CAP * levels[-1].seconds) if levels else horizon_s
    runs: list[LossRun] = []
    per_candidate = candidate_s * 1.3  # training and evaluations, at most
    # Kept for the final round and for measuring the pick again (whole horizon).
    n_finalists, orders = final_plan(budget_s, per_candidate)
    final_s = orders * (n_finalists + 1) * per_candidate
    kept = (horizon_s * 1.3 + final_s) if levels else 0.0
    stop = "budget spent"
    while True:
        left = budget_s - (time.monotonic() - started)
        if left < per_candidate + kept:
            stop = f"budget ({budget_s:.0f} s) spent"
            break
        trial = study.ask(distributions)
        config = config_of(dict(trial.params))

        def report(k: int, point: CurvePoint, trial: optuna.Trial = trial) -> bool:
            # Every candidate is evaluated at the same training times, on the goal's scale.
            trial.report(levels[-1].score(point) if levels else point.loss, k)
            return trial.should_prune()

        result = train_for(
            workload,
            config,
            train,
            holdout,
            seconds=candidate_s,
            evals=evals,
            on_eval=report,
            stop_at=levels[-1] if levels else None,
            start=start,
            metric=metric,
        )
        result = replace(result, number=trial.number, pace=pace_of(result, levels, candidate_s))
        runs.append(result)
        if result.ok and math.isfinite(result.pace):
            study.tell(trial, result.pace)
        elif result.ok:  # no levels to reach (your setup failed): the lowest loss wins
            study.tell(trial, result.best_loss)
        elif result.outcome == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, state=TrialState.FAIL)
        say(
            f"  schedule trial #{trial.number}: batch {config.batch_size}, lr {config.lr:.3g}, "
            f"{config.schedule}, warm-up {config.warmup_steps}/{config.schedule_steps} steps"
            + (f", momentum {config.momentum}" if config.momentum is not None else "")
            + f" -> {_outcome(result)}"
        )
    finalists = _final_round(
        sorted((r for r in runs if r.ok and math.isfinite(r.pace)), key=lambda r: r.pace),
        levels,
        lambda config, level, order: train_for(
            workload,
            config or user,
            train,
            holdout,
            seconds=candidate_s,
            evals=evals,
            stop_at=level,
            start=start,
            metric=metric,
            seed=workload.seed + order,
        ),
        candidate_s,
        say,
        finalists=n_finalists,
        orders=orders,
    )
    runs = [next((f for f in finalists if f.number == r.number), r) for r in runs]
    # Your setup comes first, so it wins a tie: a candidate must be sooner to be picked.
    # Without levels (your setup failed) or a final round, the search's runs stand.
    pool = finalists if levels and n_finalists else runs
    contenders = [r for r in [baseline, *pool] if r.ok]
    best = min(contenders, key=lambda r: (r.pace, r.best_loss)) if contenders else baseline
    check = None
    if best is not baseline and levels:
        # The pick again, for the whole horizon: a fresh measurement of its pace (the
        # search's best is the luckiest of many) and its full curve, for the plateau. It is
        # evaluated as often as a candidate was, so its times to the levels compare.
        say(f"  the pick again for the whole {horizon_s:.0f} s")
        check = train_for(
            workload,
            best.config,
            train,
            holdout,
            seconds=horizon_s,
            evals=min(MAX_EVALS, max(evals, round(evals * horizon_s / candidate_s))),
            start=start,
            metric=metric,
            seed=workload.seed + orders + 1,  # a data order no run of it has seen
        )
        check = replace(check, label="the pick again", pace=pace_of(check, levels, horizon_s))
        say(f"  the pick again: {_outcome(check)}")
        measured = [*(best.paces or (best.pace,)), check.pace if check.ok else math.inf]
        if geometric_mean(measured) >= 1:
            notes.append(
                f"the pick (#{best.number}) was not sooner than your setup over all its runs "
                f"({', '.join(f'{1 / p:.2f}x' for p in measured)}): your setup is kept"
            )
            say(f"  {notes[-1]}")
            best = baseline
    if finding.suggestion is None:
        notes.append(
            f"the LR range test gave no suggestion ({finding.reason}); LRs were "
            f"searched around your own lr {user_lr:g}"
        )
    return ConvergenceResult(
        baseline=baseline,
        best=best,
        runs=runs,
        finding=finding,
        rule=rule,
        rule_reason=rule_reason,
        horizon_s=horizon_s,
        holdout=holdout.source,
        study_name=study_name,
        stop_reason=stop,
        plateau=find_plateau(
            (check if check and check.ok and best is not baseline else best).curve
        ),
        levels=levels,
        check=check,
        baseline_plateau=flattened,
        notes=notes,
        aim=aim if levels else "",
    )


def final_plan(budget_s: float, per_candidate_s: float) -> tuple[int, int]:
    """(finalists, data orders) for the final round: the most that fit in
    ``FINAL_SHARE`` of the study's budget, preferring more data orders to more finalists
    (each order trains your setup and every finalist once).

    Example:
        >>> final_plan(300, 10), final_plan(300, 20), final_plan(300, 40), final_plan(300, 50)
        ((3, 2), (2, 1), (1, 1), (0, 0))
    """
    for finalists, orders in FINAL_PLANS:
        if orders * (finalists + 1) * per_candidate_s <= FINAL_SHARE * budget_s:
            return finalists, orders
    return 0, 0  # no final round: the search's best is the pick


def _final_round(
    ranked: list[LossRun],
    levels: list[Level],
    train_again: Callable[[TrainingConfig | None, Level, int], LossRun],
    candidate_s: float,
    say: Callable[[str], None],
    *,
    finalists: int,
    orders: int,
) -> list[LossRun]:
    """The ``finalists`` best candidates, each trained again on ``orders`` other data
    orders (1, 2, ...; your setup too, for the times to beat on each), with their pace the
    geometric mean over all their runs. The search's best is the luckiest of many: one run
    each does not tell a sooner setup from a lucky one."""
    best = ranked[:finalists]
    if not levels or not best:
        return best
    say(
        f"  final round: your setup and the best {len(best)} again, on {orders} other "
        f"data order{'s' if orders > 1 else ''}"
    )
    paces: dict[int | None, list[float]] = {run.number: [run.pace] for run in best}
    for order in range(1, orders + 1):
        yours = train_again(None, levels[-1], order)
        if not yours.ok:
            continue
        # Your times on this order (a level it missed keeps its first time).
        again = [replace(v, seconds=v.time_in(yours) or v.seconds) for v in levels]
        for run in best:
            second = train_again(run.config, levels[-1], order)
            pace = pace_of(second, again, candidate_s) if second.ok else math.inf
            paces[run.number].append(pace)
            say(f"  #{run.number} on order {order}: {_outcome(replace(second, pace=pace))}")
    kept = []
    for run in best:
        each = paces[run.number]
        if len(each) > 1 and all(math.isfinite(p) for p in each):
            pace = geometric_mean(each)
            say(f"  #{run.number} over {len(each)} runs: {1 / pace:.2f}x your pace")
            kept.append(replace(run, pace=pace, paces=tuple(each)))
    return kept


def _nearest(value: float, options: Sequence[Any]) -> Any:
    return min(options, key=lambda o: abs(o - value))


def _outcome(run: LossRun) -> str:
    if run.ok:
        pace = f", {run.speedup:.2f}x your pace" if run.speedup else ""
        return f"held-out loss {run.final:.4g} after {run.curve[-1].seconds:.1f} s{pace}"
    last = f" (last {run.final:.4g})" if run.curve else ""
    return f"{run.outcome}: {run.message}{last}"
