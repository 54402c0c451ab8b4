"""``advise()``: the Python front end. It diagnoses a training setup in-process, searches
for the fastest one and proves the speedup, then (with held-out data) the soonest to a good
model.

Stages: check the arguments; describe the data (and hold some out); build the workload;
measure the baseline; then the shared pipeline (``autoaccel.pipeline``) with one budget.
The caller's model, optimizer, RNG states and thread settings are left as they were.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from autoaccel.advice import Advice
from autoaccel.budget import DEFAULT_MAX_TRIALS, Budget
from autoaccel.config import TrainingConfig
from autoaccel.confirm import CONFIRM_PAIRS
from autoaccel.errors import UsageError
from autoaccel.measure import Measurement, MeterSettings, PruneBelow
from autoaccel.pipeline import ADVISE, Job, PipelineOptions
from autoaccel.pipeline.front import tune_job
from autoaccel.probe import probe_system
from autoaccel.process import preserved_process_state
from autoaccel.progress import plain_console, say
from autoaccel.record import run_record, write_record
from autoaccel.runtime.data import DataSpec, describe_data
from autoaccel.runtime.run import has_conv, model_fingerprint
from autoaccel.search import WorkloadFacts
from autoaccel.states import Objective
from autoaccel.time_to_loss import Goal, HeldOut, InProcessTrainer, check_goal, holdout_split
from autoaccel.trials.in_process import run_trial
from autoaccel.trials.workload import OptimizerLike, Workload, make_workload

__all__ = ["advise"]

#: Where advise() writes its run records (summary.json), for `autoaccel report`; with a
#: SQLite ``storage=`` path, in a ``runs`` folder beside it.
RUNS_DIR = Path(".autoaccel") / "runs"


def advise(
    model: nn.Module,
    data: Any,
    *,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    optimizer: OptimizerLike = None,
    budget_s: float | None = None,
    max_trials: int = DEFAULT_MAX_TRIALS,
    keep_global_batch: bool = False,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int | None = None,
    loader_kwargs: Mapping[str, Any] | None = None,
    include_compile: bool = False,
    settings: MeterSettings | None = None,
    progress: bool = True,
    confirm_pairs: int = CONFIRM_PAIRS,
    val_data: Any = None,
    objective: str | None = None,
    horizon_s: float | None = None,
    target: float | None = None,
    metric: Callable[[Any, Any], Any] | None = None,
) -> Advice:
    """Find the fastest training setup for ``model`` on ``data`` here, measured.

    With ``objective="time-to-loss"`` (the default when ``val_data`` is given) "fastest"
    means reaching the held-out losses your own setup reaches soonest, not the most
    samples/s: the throughput search picks the system settings, then a schedule study
    picks batch size, LR (around an LR range test's suggestion), warm-up, decay and
    momentum (see ``autoaccel.time_to_loss``).

    Args:
        model: The model to train; never changed (trials train copies).
        data: A Dataset, a DataLoader (its settings are the baseline) or tensors ``(X, y)``.
        loss_fn: ``loss_fn(model(*inputs), target)``; inferred only when unambiguous
            (cross-entropy for integer targets, or a model that returns its own loss).
        optimizer: The caller's optimizer (copied per trial, never stepped), a factory
            ``params -> optimizer``, or None for AdamW(lr=1e-3).
        budget_s: Wall-clock budget for everything (baseline, search and confirm);
            default 120 s, or 360 s for time-to-loss.
        max_trials: At most this many measured trials.
        keep_global_batch: Keep the global batch (batch x accumulation) as it is.
        storage: Optuna storage URL or SQLite path (default ``.autoaccel/studies.db``).
        study_name: Name of the study; the default is derived from the workload, so the
            same call resumes.
        seed: Seeds the sampler.
        loader_kwargs: Loader settings for a Dataset (batch_size, shuffle, collate_fn, ...).
        include_compile: Search torch.compile as well (slow: compile time per trial).
        settings: Warm-up and window lengths of each trial.
        progress: Print a line per trial on stderr.
        confirm_pairs: Interleaved baseline/best pairs measured to confirm the speedup.
        val_data: A validation set (same kinds as ``data``) to score the loss on.
        objective: ``"throughput"`` (system knobs only; the default without val_data) or
            ``"time-to-loss"`` (the default with val_data; without it, training samples
            are held out for scoring).
        horizon_s: Training time your setup gets to set the losses to beat, and at most
            each schedule candidate (default: a tenth of the budget left after the
            throughput search).
        target: The held-out quality you aim for, for time-to-loss: a loss (reached at or
            below it), or a value of ``metric``. When your setup reaches it within the
            horizon, "sooner" means sooner to it alone; else to your setup's losses.
        metric: ``metric(model(*inputs), target) -> number``, the batch's mean (e.g.
            accuracy); averaged over the held-out samples. Higher is better when the
            untrained model scores below ``target``. Needs ``target``.

    Returns:
        The ``Advice``; ``advice.config`` is the recommended ``TrainingConfig``.

    Raises:
        DataError: empty data, model and data that do not fit (naming the call and the
            shapes), no loss to infer, data on another device than the model.
        UsageError: a budget too small for one trial, max_trials < 1, a target with the
            throughput objective or a metric without one, a target the untrained model
            already reaches.

    Example:
        >>> X, y = torch.randn(4096, 32), torch.randint(0, 4, (4096,))
        >>> model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))
        >>> advice = advise(model, (X, y), budget_s=30, progress=False)  # doctest: +SKIP
        >>> advice.speedup.median > 1                                     # doctest: +SKIP
        True
    """
    options = PipelineOptions.checked(
        ADVISE,
        objective=objective,
        default_objective=Objective.TIME_TO_LOSS if val_data is not None else Objective.THROUGHPUT,
        budget_s=budget_s,
        max_trials=max_trials,
        keep_global_batch=keep_global_batch,
        storage=storage,
        study_name=study_name,
        seed=seed,
        include_compile=include_compile,
        settings=settings or MeterSettings(),
        confirm_pairs=confirm_pairs,
        horizon_s=horizon_s,
        target=target,
        metric=metric,
        command=f"autoaccel.advise({type(model).__name__}, ...)",
    )
    budget = Budget(options.budget_s)
    console = plain_console(stderr=True) if progress else None
    held = _held_out(describe_data(data, loader_kwargs=loader_kwargs), val_data, options)
    with preserved_process_state(rng=True):
        workload = make_workload(
            model, held.train, loss_fn=loss_fn, optimizer=optimizer, seed=seed or 0
        )
        goal = None
        if options.objective is Objective.TIME_TO_LOSS and target is not None:
            goal = check_goal(workload, held, Goal(target, metric, _metric_name(metric)))
        trainer = InProcessTrainer(workload, held, metric)
        advice = tune_job(
            lambda: (_job(workload, options, trainer, console), goal),
            options,
            budget,
            console=console,
        )
    advice.record_path = _write_record(advice, options)
    return advice


def _held_out(spec: DataSpec, val_data: Any, options: PipelineOptions) -> HeldOut:
    """What trains and what scores: with time-to-loss, the validation set or samples held
    out of training; else all the data trains, and the guard scores the validation set
    when there is one (else the training loss)."""
    if options.objective is Objective.TIME_TO_LOSS:
        return HeldOut(*holdout_split(spec, val_data, seed=options.seed or 0))
    return HeldOut(spec, holdout_split(spec, val_data)[1] if val_data is not None else None)


def _write_record(advice: Advice, options: PipelineOptions) -> Path:
    """The run record, in ``RUNS_DIR`` or beside a SQLite ``storage=`` path."""
    storage = options.storage
    record = run_record(advice, kind="advise", command=options.command, storage=storage)
    runs = RUNS_DIR if storage is None or "://" in storage else Path(storage).parent / "runs"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return write_record(record, runs / f"{advice.search.study_name}-{stamp}")


def _job(
    workload: Workload, options: PipelineOptions, trainer: InProcessTrainer, console: Console | None
) -> Job:
    """The baseline measured in-process, with the facts the pipeline needs.

    Raises:
        UsageError: the caller's own setup cannot be measured (it fails as it is).
    """

    def measure(config: TrainingConfig, prune: PruneBelow | None = None) -> Measurement:
        return run_trial(workload, config, options.settings, prune=prune)

    user = workload.user_config()
    say(
        console,
        f"measuring the baseline (batch {user.batch_size}, {user.num_workers} workers, "
        f"{user.num_threads} threads, fp32)",
    )
    baseline = measure(user)
    if not baseline.ok:
        raise UsageError(
            f"the current setup cannot be measured ({baseline.outcome}: "
            f"{baseline.message}); fix the training step first"
        )
    spec = workload.data
    facts = WorkloadFacts(
        model_name=type(workload.model).__name__,
        parameter_count=workload.parameter_count,
        dataset_size=len(spec),
        conv_model=has_conv(workload.model),
        tensor_data=spec.tensors is not None,
        device=workload.device,
        start_s=ADVISE.start_s,
        optimizer=type(optimizer := workload.fresh()[1]).__name__,
        optimizer_lr=float(optimizer.param_groups[0]["lr"]),
    )
    return Job(
        measure,
        user,
        baseline,
        facts,
        probe_system(),
        model=model_fingerprint(workload.model),
        trainer=trainer,
    )


def _metric_name(metric: Callable[..., Any] | None) -> str:
    if metric is None:
        return "held-out loss"
    name = getattr(metric, "__name__", "")
    return name if name.isidentifier() else "metric"
