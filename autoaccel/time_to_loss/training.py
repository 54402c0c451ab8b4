"""Training runs scored on held-out data: a candidate for a stretch of training time, and
Smith's LR range test. Each trains a fresh copy of the caller's model (the caller's model,
optimizer and RNG states are never touched) through the same prepared ``Run`` and
``Run.train_step`` as every other trial."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from autoaccel.config import TrainingConfig
from autoaccel.errors import UsageError
from autoaccel.measure import classify_failure
from autoaccel.process import applied_settings
from autoaccel.runtime.data import DataSpec, build_loader
from autoaccel.runtime.run import Run, endless
from autoaccel.schedule import (
    LrFinding,
    RangeSweep,
    apply_lr,
    apply_momentum,
    build_scheduler,
    sweep_config,
)
from autoaccel.states import Outcome
from autoaccel.time_to_loss.curves import CurvePoint, Goal, Level, LossRun
from autoaccel.time_to_loss.holdout import Holdout
from autoaccel.trials.workload import Workload

__all__ = ["EVALS", "HeldOut", "Scoring", "check_goal", "find_lr", "prepared_run", "train_for"]

EVALS = 12  # held-out evaluations per candidate (the pruner's rungs sit on them)


@dataclass(frozen=True)
class HeldOut:
    """What a run trains on and what its held-out loss is scored on."""

    train: DataSpec
    holdout: Holdout


@dataclass(frozen=True)
class Scoring:
    """How often a run is scored on the held-out data, and when it stops early.

    Args:
        evals: Held-out evaluations at even intervals of the training time.
        max_steps: Stop after this many optimizer steps instead (then evaluated once).
        stop_at: Stop (as done, "ok") once an evaluation reaches this level.
        start: The untrained model's held-out (loss, metric), when the caller knows it
            (the same for every candidate); the run's curve starts there at 0 s.
        metric: Also score ``metric(output, target)`` at each evaluation.
    """

    evals: int = EVALS
    max_steps: int | None = None
    stop_at: Level | None = None
    start: tuple[float | None, float | None] | None = None
    metric: Callable[[Any, Any], Any] | None = None


def prepared_run(
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


def train_for(
    workload: Workload,
    config: TrainingConfig,
    data: HeldOut,
    *,
    seconds: float,
    scoring: Scoring = Scoring(),
    on_eval: Callable[[int, CurvePoint], bool] | None = None,
    seed: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> LossRun:
    """Train a fresh copy with ``config`` for ``seconds`` of training time (evaluation
    time not counted), scoring the held-out loss as ``scoring`` says.

    Never raises for a failing configuration: a diverging loss, OOM or a crash come back as
    the run's ``outcome``; ``on_eval(k, point)`` returning True prunes it.

    Args:
        seed: Seeds the data order and random draws (default: the workload's).
        clock: Seconds as a float; injected in tests.
    """
    scored = _Scored(workload, data.holdout, scoring, on_eval, clock)
    outcome, message = Outcome.OK, ""
    run: Run | None = None
    gc.collect()
    try:
        with applied_settings(config):
            run = prepared_run(workload, config, data.train, seed)
            if scored.start is None and scoring.max_steps is None:
                scored.start = data.holdout.evaluate(run, workload.loss, scoring.metric)
            outcome, message = scored.train(run, seconds)
    except Exception as error:  # every failure is a finding about this config
        outcome, message = classify_failure(error)
    finally:
        if run is not None:
            run.close()
        gc.collect()
    loss, value = scored.start or (None, None)
    curve = tuple(scored.curve)
    return LossRun(config, outcome, message, curve, start_loss=loss, start_metric=value)


class _Scored:
    """One run's training loop with its held-out evaluations (the curve)."""

    def __init__(
        self,
        workload: Workload,
        holdout: Holdout,
        scoring: Scoring,
        on_eval: Callable[[int, CurvePoint], bool] | None,
        clock: Callable[[], float],
    ) -> None:
        self.workload = workload
        self.holdout = holdout
        self.scoring = scoring
        self.on_eval = on_eval
        self.clock = clock
        self.start = scoring.start
        self.curve: list[CurvePoint] = []
        self.paused = 0.0  # seconds spent evaluating, not training

    def train(self, run: Run, seconds: float) -> tuple[Outcome, str]:
        """Train until the last evaluation (or a stop); (outcome, message)."""
        evals, max_steps = self.scoring.evals, self.scoring.max_steps
        began = self.clock()
        k = 0
        for batch in endless(run.loader):
            loss = run.train_step(self.workload.loss, batch)
            if max_steps is not None:
                if run.optimizer_steps < max_steps:
                    continue
                evals = k + 1
            elif self.clock() - began - self.paused < seconds * (k + 1) / evals:
                continue
            k += 1
            stop = self._evaluate(run, loss, began, k, evals)
            if stop is not None:
                return stop
            if k >= evals:
                break
        return Outcome.OK, ""

    def _evaluate(
        self, run: Run, loss: torch.Tensor, began: float, k: int, evals: int
    ) -> tuple[Outcome, str] | None:
        """Score the held-out data once; a reason to stop, or None to go on."""
        if run.device.type == "cuda":
            torch.cuda.synchronize()
        trained_s = self.clock() - began - self.paused
        scoring = self.clock()
        held, value = self.holdout.evaluate(run, self.workload.loss, self.scoring.metric)
        self.paused += self.clock() - scoring
        point = CurvePoint(trained_s, run.optimizer_steps, held, value)
        self.curve.append(point)
        last = float(loss.detach())
        if not (math.isfinite(held) and math.isfinite(last)):
            bad = held if not math.isfinite(held) else last
            return Outcome.DIVERGED, f"the loss became {bad} by step {run.optimizer_steps}"
        stop_at = self.scoring.stop_at
        if stop_at is not None and stop_at.reached(point):
            return Outcome.OK, f"reached {stop_at.value:.4g} at evaluation {k} of {evals}"
        if self.on_eval is not None and k < evals and self.on_eval(k, point):
            return Outcome.PRUNED, f"stopped at evaluation {k} of {evals}"
        return None


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
        run = prepared_run(workload, sweep_config(config), train)
        try:
            ends = time.monotonic() + max_s
            for batch in endless(run.loader):
                apply_lr(run.optimizer, sweep.lr)
                loss = run.train_step(workload.loss, batch)
                if sweep.record(float(loss.detach())):
                    break
                if time.monotonic() > ends:
                    sweep.stop = f"stopped after {max_s:.0f} s at lr {sweep.lr:.3g}"
                    break
        finally:
            run.close()
    return sweep.finding()


def check_goal(workload: Workload, data: HeldOut, goal: Goal) -> Goal:
    """``goal``, checked on the untrained model before any work.

    Raises:
        DataError: the metric fails on the held-out batches or gives no single number.
        UsageError: the untrained model already reaches the target.
    """
    run = prepared_run(workload, workload.user_config(), data.train)
    try:
        loss, value = data.holdout.evaluate(run, workload.loss, goal.metric)
    finally:
        run.close()
    untrained = loss if value is None else value
    if (goal.metric is None and untrained <= goal.target) or untrained == goal.target:
        raise UsageError(
            f"target={goal.target:g}: the untrained model already scores {untrained:.4g} "
            f"({goal.name}, {data.holdout.source}); give a target it has to learn to reach"
        )
    return goal
