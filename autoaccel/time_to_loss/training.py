"""Training runs scored on held-out data: a candidate for a stretch of training time, and
Smith's LR range test. Each trains a fresh copy of the caller's model (the caller's model,
optimizer and RNG states are never touched) through the same prepared ``Run`` and
``Run.train_step`` as every other trial."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch

from autoaccel.config import TrainingConfig
from autoaccel.curves import CurvePoint, Goal, LossRun
from autoaccel.errors import UsageError
from autoaccel.measure import classify_failure
from autoaccel.process import applied_settings
from autoaccel.runtime.data import DataSpec, build_loader
from autoaccel.runtime.run import Run, endless
from autoaccel.schedule import (
    LrFinding,
    OptimizerFacts,
    RangeSweep,
    apply_lr,
    apply_momentum,
    build_scheduler,
    sweep_config,
)
from autoaccel.scoring import EVALS, Scorer, Scoring
from autoaccel.states import Outcome
from autoaccel.time_to_loss.holdout import Holdout
from autoaccel.trials.workload import Workload

DEFAULT_SCORING = Scoring()

__all__ = [
    "EVALS",
    "HeldOut",
    "InProcessTrainer",
    "OptimizerFacts",
    "Scoring",
    "Trainer",
    "check_goal",
    "find_lr",
    "prepared_run",
    "train_for",
]


@dataclass(frozen=True)
class HeldOut:
    """What a run trains on and what its held-out loss is scored on (None: no held-out
    data, the run is scored on its training loss)."""

    train: DataSpec
    holdout: Holdout | None


class Trainer(Protocol):
    """Trains a config for a stretch of time and draws its loss curve: in-process for
    ``advise()`` (``InProcessTrainer``), as script trials for ``autoaccel tune``
    (``autoaccel.trials.curves.ScriptTrainer``). The schedule study and the pipeline's
    guard see only this."""

    seed: int  # the data order candidates train on (others are seed + 1, + 2, ...)
    scored_on: str  # what the held-out loss is scored on, in words
    held_out: bool  # whether there is held-out data (else only the training loss)
    optimizer: OptimizerFacts

    def train_for(
        self,
        config: TrainingConfig,
        *,
        seconds: float,
        scoring: Scoring,
        on_eval: Callable[[int, CurvePoint], bool] | None = None,
        seed: int | None = None,
    ) -> LossRun:
        """``config`` trained for ``seconds`` of training time from your initial weights;
        never raises for a failing config (its outcome says)."""
        ...  # pragma: no cover

    def find_lr(self, config: TrainingConfig, *, steps: int, max_s: float) -> LrFinding:
        """Smith's LR range test at ``config``'s batch size."""
        ...  # pragma: no cover


class InProcessTrainer:
    """``Trainer`` on fresh copies of the caller's model, in this process (``advise()``).

    Args:
        workload: The caller's model, optimizer, data and loss.
        data: What to train on, and the held-out data (None: scored on the training loss).
        metric: ``metric(output, target)``, scored with the held-out loss when given.
    """

    def __init__(
        self,
        workload: Workload,
        data: HeldOut,
        metric: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        self.workload = workload
        self.data = data
        self.metric = metric
        self.seed = workload.seed
        self.scored_on = data.holdout.source if data.holdout else "the training loss"
        self.held_out = data.holdout is not None
        self.optimizer = OptimizerFacts.of(workload.fresh()[1])

    def train_for(
        self,
        config: TrainingConfig,
        *,
        seconds: float,
        scoring: Scoring,
        on_eval: Callable[[int, CurvePoint], bool] | None = None,
        seed: int | None = None,
    ) -> LossRun:
        return train_for(
            self.workload,
            config,
            self.data,
            seconds=seconds,
            scoring=scoring,
            on_eval=on_eval,
            seed=seed,
            metric=self.metric,
        )

    def find_lr(self, config: TrainingConfig, *, steps: int, max_s: float) -> LrFinding:
        return find_lr(self.workload, config, self.data.train, steps=steps, max_s=max_s)


def prepared_run(
    workload: Workload, config: TrainingConfig, train: DataSpec, seed: int | None = None
) -> Run:
    """A fresh copy of the model, set up with ``config`` (LR, momentum and schedule), its
    data order and random draws (dropout, augmentation) from ``seed`` (default: the
    workload's)."""
    seed = workload.seed if seed is None else seed
    torch.manual_seed(seed)
    model, optimizer, device = workload.fresh(config)
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
        device=device,
    )


def train_for(
    workload: Workload,
    config: TrainingConfig,
    data: HeldOut,
    *,
    seconds: float,
    scoring: Scoring = DEFAULT_SCORING,
    on_eval: Callable[[int, CurvePoint], bool] | None = None,
    seed: int | None = None,
    metric: Callable[[Any, Any], Any] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> LossRun:
    """Train a fresh copy with ``config`` for ``seconds`` of training time (evaluation
    time not counted), scored as ``scoring`` says (``autoaccel.scoring``).

    Never raises for a failing configuration: a diverging loss, OOM or a crash come back as
    the run's ``outcome``; ``on_eval(k, point)`` returning True prunes it.

    Args:
        seed: Seeds the data order and random draws (default: the workload's).
        metric: Also score ``metric(output, target)`` at each evaluation.
        clock: Seconds as a float; injected in tests.
    """
    holdout = data.holdout if scoring.held_out else None
    scorer: Scorer | None = None
    outcome, message = Outcome.OK, ""
    run: Run | None = None
    start = scoring.start
    gc.collect()
    try:
        with applied_settings(config):
            run = prepared_run(workload, config, data.train, seed)
            if holdout is not None and start is None and scoring.max_steps is None:
                start = holdout.evaluate(run, workload.loss, metric)
            scorer = Scorer(replace(scoring, start=start), seconds, clock=clock)
            outcome, message = _train(run, workload, scorer, holdout, metric, on_eval)
    except Exception as error:  # every failure is a finding about this config
        outcome, message = classify_failure(error)
    finally:
        if run is not None:
            run.close()
        gc.collect()
    if scorer is not None:
        start = scorer.start
    loss, value = start or (None, None)
    curve = tuple(scorer.curve) if scorer is not None else ()
    return LossRun(config, outcome, message, curve, start_loss=loss, start_metric=value)


def _train(
    run: Run,
    workload: Workload,
    scorer: Scorer,
    holdout: Holdout | None,
    metric: Callable[[Any, Any], Any] | None,
    on_eval: Callable[[int, CurvePoint], bool] | None,
) -> tuple[Outcome, str]:
    """Train until the last evaluation (or a stop); (outcome, message)."""
    for batch in endless(run.loader):
        loss = run.train_step(workload.loss, batch)
        if not scorer.due(float(loss.detach()), steps=run.optimizer_steps):
            continue
        if holdout is None:
            stop = scorer.record(*scorer.training_loss(), steps=run.optimizer_steps)
        else:
            if run.device.type == "cuda":
                torch.cuda.synchronize()
            trained_s = scorer.pause()
            held, value = holdout.evaluate(run, workload.loss, metric)
            stop = scorer.record(held, value, steps=run.optimizer_steps, trained_s=trained_s)
        if stop is not None:
            return stop
        if on_eval is not None and on_eval(scorer.k, scorer.curve[-1]):
            return Outcome.PRUNED, f"stopped at evaluation {scorer.k} of {scorer.evals}"
    return Outcome.OK, ""  # pragma: no cover - endless() never ends


def find_lr(
    workload: Workload,
    config: TrainingConfig,
    train: DataSpec,
    *,
    steps: int,
    max_s: float,
) -> LrFinding:
    """Smith's LR range test at ``config``'s batch size, on a fresh copy of the model (the
    caller's model and optimizer are never touched)."""
    sweep = RangeSweep(steps=steps)
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
    if data.holdout is None:
        raise UsageError("a target needs held-out data: give val_data, or leave target out")
    run = prepared_run(workload, workload.user_config(), data.train)
    try:
        metric = goal.metric if callable(goal.metric) else None
        loss, value = data.holdout.evaluate(run, workload.loss, metric)
    finally:
        run.close()
    goal.check_untrained(loss, value, data.holdout.source, spelled="target=")
    return goal
