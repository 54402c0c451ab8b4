"""``prepare()``: the few lines a training script adds to run with a tuned config.

In a normal run ``prepare()`` loads ``autoaccel.yaml`` (``config=``, ``AUTOACCEL_CONFIG``,
the working directory, or beside the script, in that order) and applies it; with none it
changes nothing and says how to tune. Under ``autoaccel tune`` (``AUTOACCEL_TRIAL`` set) it
applies the trial's config, measures the steps, writes the result and ends the script
through ``TrialFinished``.
"""

from __future__ import annotations

import atexit
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from autoaccel.config import TrainingConfig, load_config
from autoaccel.data import DataSpec, build_loader, describe_data
from autoaccel.errors import ConfigError
from autoaccel.measure import (
    Measurement,
    Meter,
    PruneBelow,
    PruneTrial,
    TrialTimeout,
    classify_failure,
    process_rss_bytes,
)
from autoaccel.probe import probe_system
from autoaccel.protocol import TrialFinished, TrialReport, TrialSpec, read_trial_spec
from autoaccel.run import Run, StepObserver, has_conv, model_device
from autoaccel.schedule import RangeSweep, apply_lr, apply_momentum, build_scheduler, scale_lr

__all__ = ["CONFIG_ENV", "find_config", "prepare"]

#: Names a config file for normal runs (``autoaccel run`` sets it).
CONFIG_ENV = "AUTOACCEL_CONFIG"
CONFIG_NAME = "autoaccel.yaml"

_HINT = (
    "autoaccel: no autoaccel.yaml found, so your own settings run unchanged. "
    "Tune them with: autoaccel tune {script}"
)


def find_config(config: TrainingConfig | str | os.PathLike[str] | None = None) -> Path | None:
    """Where the config for this run is: ``config``, ``$AUTOACCEL_CONFIG``, ./autoaccel.yaml,
    or autoaccel.yaml beside the running script; None when there is none.

    Raises:
        ConfigError: ``config`` or ``$AUTOACCEL_CONFIG`` names a file that does not exist.
    """
    if isinstance(config, TrainingConfig):
        return None
    for named, origin in ((config, "config="), (os.environ.get(CONFIG_ENV), f"${CONFIG_ENV}")):
        if named:
            path = Path(named)
            if not path.is_file():
                raise ConfigError(
                    f"{origin} names {path}, which does not exist; write it with "
                    "`autoaccel tune` or fix the path"
                )
            return path
    for folder in (Path.cwd(), Path(sys.argv[0]).resolve().parent if sys.argv[0] else None):
        if folder is not None and (folder / CONFIG_NAME).is_file():
            return folder / CONFIG_NAME
    return None


def _user_config(
    spec: DataSpec | None, batch_size: int | None, grad_accum_steps: int
) -> TrainingConfig:
    """What the script asked for itself, as a config."""
    base = spec.user_config() if spec is not None else TrainingConfig(batch_size=batch_size or 32)
    return replace(base, grad_accum_steps=grad_accum_steps, num_threads=torch.get_num_threads())


def _distributed() -> tuple[int, int]:
    """(rank, world size), starting the process group when torchrun launched several."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


class TrialSession(StepObserver):
    """The meter inside a tuner's trial: measures steps, writes the report, ends the run."""

    def __init__(
        self,
        spec: TrialSpec,
        report: dict[str, Any],
        *,
        rank: int,
        world: int,
        device: torch.device,
        optimizer: torch.optim.Optimizer,
    ) -> None:
        self.spec = spec
        self.optimizer = optimizer
        self.sweep = RangeSweep(**spec.lr_sweep) if spec.lr_sweep is not None else None
        if self.sweep is not None:
            apply_lr(optimizer, self.sweep.lr)
        self.report = report
        self.rank = rank
        self.world = world
        self.device = device
        self._fetched = False
        self._written = False
        cuda = device.type == "cuda"
        self._base_memory = 0 if cuda else process_rss_bytes()
        prune = PruneBelow(spec.prune_below_samples_per_s / world)
        self.meter = Meter(
            spec.meter_settings(),
            sync=torch.cuda.synchronize if cuda else None,
            memory=None if cuda else process_rss_bytes,
            prune=prune,
        )
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        self._previous_hook = sys.excepthook
        sys.excepthook = self._on_uncaught
        atexit.register(self._on_exit)

    def fetch_start(self) -> None:
        self.meter.fetch_start()

    def fetch_end(self, samples: int) -> None:
        self.meter.fetch_end(samples)
        self._fetched = True

    def step_end(self, loss: torch.Tensor | None, batch_size: int) -> None:
        if not self._fetched:  # the script batches by itself: the step began at the last end
            self.meter.step_started_at_last_end(batch_size)
        self._fetched = False
        status, failure = 0, None
        if self.sweep is not None:
            # Every rank keeps the same step count, so the same next LR; rank 0 decides.
            done = self.sweep.record(float(loss.detach())) if loss is not None else True
            status = 3 if done else 0
            if not done:
                apply_lr(self.optimizer, self.sweep.lr)
        elif self.rank == 0:
            try:
                self.meter.step_end(loss)
                status = 1 if self.meter.done else 0
            except (PruneTrial, TrialTimeout, FloatingPointError) as error:
                status, failure = 2, error
        if self.world > 1:
            # Rank 0 decides for everyone, so every process leaves at the same step.
            flag = torch.tensor([status], device=self.device)
            dist.broadcast(flag, src=0)
            status = int(flag.item())
        if status == 0:
            return
        if self.rank == 0:
            if self.sweep is not None:
                self._finish_sweep(self.sweep)
            else:
                self._finish(failure)
        raise TrialFinished()

    def _finish_sweep(self, sweep: RangeSweep) -> None:
        curve = {"lrs": sweep.lrs, "raw": sweep.raw, "stop": sweep.stop}
        report = TrialReport(
            measurement=Measurement(outcome="ok", message="LR range test").to_dict(),
            world_size=self.world,
            lr_curve=curve,
            **self.report,
        )
        report.write(Path(self.spec.report_path))
        self._written = True

    def _finish(self, failure: BaseException | None) -> None:
        if failure is not None:
            outcome, message = classify_failure(failure)
            running = getattr(failure, "samples_per_s", 0.0)
            measurement = Measurement(outcome=outcome, message=message, samples_per_s=running)
        else:
            try:
                measurement = self.meter.result()
            except FloatingPointError as error:
                outcome, message = classify_failure(error)
                measurement = Measurement(outcome=outcome, message=message)
        if self.world > 1:  # every process trained as many samples in the same time
            measurement = replace(
                measurement,
                samples_per_s=measurement.samples_per_s * self.world,
                samples_per_s_min=measurement.samples_per_s_min * self.world,
                samples_per_s_max=measurement.samples_per_s_max * self.world,
                samples=measurement.samples * self.world,
            )
        if self.device.type == "cuda":
            measurement = replace(
                measurement,
                memory_kind="cuda",
                peak_memory_bytes=torch.cuda.max_memory_allocated(self.device),
            )
        else:
            measurement = replace(measurement, memory_base_bytes=self._base_memory)
        self._write(measurement)

    def _write(self, measurement: Measurement) -> None:
        report = TrialReport(
            measurement=measurement.to_dict(), world_size=self.world, **self.report
        )
        report.write(Path(self.spec.report_path))
        self._written = True

    def _on_exit(self) -> None:
        """The script ended on its own before the window closed: say so, usefully."""
        if self.rank == 0 and not self._written and self.sweep is not None and self.sweep.raw:
            self.sweep.stop = f"the script ended after {len(self.sweep.raw)} steps"
            self._finish_sweep(self.sweep)  # a short sweep is still a curve
        if self.rank == 0 and not self._written:
            steps = self.meter.steps
            self._write(
                Measurement(
                    outcome="error",
                    message=f"the script ended after {steps} steps, before the measurement "
                    "finished; let it train longer under `autoaccel tune` (more epochs or steps)",
                )
            )

    def _on_uncaught(
        self, kind: type[BaseException], error: BaseException, tb: TracebackType | None
    ) -> None:
        """A crash in the script's own code still leaves a classified result."""
        if self.rank == 0 and not self._written and isinstance(error, Exception):
            outcome, message = classify_failure(error)
            self._write(Measurement(outcome=outcome, message=message))
        self._previous_hook(kind, error, tb)


def prepare(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Any = None,
    *,
    loader_kwargs: Mapping[str, Any] | None = None,
    scheduler: Any = None,
    config: TrainingConfig | str | os.PathLike[str] | None = None,
    batch_size: int | None = None,
    grad_accum_steps: int = 1,
    total_steps: int | None = None,
) -> Run:
    """Apply the tuned config (or a tuner's trial) to a training script's objects.

    Args:
        model: The model, on the device it trains on.
        optimizer: Its optimizer.
        data: A Dataset, a DataLoader or tensors ``(X, y)``; None when the script batches
            by itself (then read ``run.batch_size`` and ``run.grad_accum_steps``).
        loader_kwargs: The script's own loader settings for a Dataset (batch_size,
            shuffle, collate_fn, drop_last, num_workers, ...).
        scheduler: The script's LR scheduler; it wins over a tuned schedule (said once).
        config: A ``TrainingConfig`` or a path; the default looks for autoaccel.yaml.
        batch_size: The script's own batch size when it batches by itself.
        grad_accum_steps: The script's own gradient accumulation.
        total_steps: Optimizer steps the whole run takes (epochs x batches per epoch /
            accumulation); a tuned decaying schedule is stretched over them. Without it the
            decay spans the steps it was tuned for, and prepare() says so.

    Returns:
        The ``Run``: ``run.loader``, ``run.autocast()``, ``run.backward(loss)``,
        ``run.step()``, ``run.model``, ``run.optimizer``, ``run.scheduler``, ``run.device``.

    Raises:
        ConfigError: a named config file that is missing or invalid.
        DataError: the data cannot be used.

    Example:
        >>> run = autoaccel.prepare(model, optimizer, dataset,       # doctest: +SKIP
        ...                         loader_kwargs={"batch_size": 64, "shuffle": True})
        >>> for x, y in run.loader:                                  # doctest: +SKIP
        ...     with run.autocast():
        ...         loss = loss_fn(run.model(x), y)
        ...     run.backward(loss)
        ...     run.step()
    """
    spec = describe_data(data, loader_kwargs=loader_kwargs) if data is not None else None
    if spec is None and loader_kwargs and batch_size is None:
        batch_size = loader_kwargs.get("batch_size")
    user = _user_config(spec, batch_size, grad_accum_steps)
    trial = read_trial_spec()
    notes: list[str] = []
    if trial is not None:
        Path(trial.started_path).touch()
        chosen = user if trial.baseline else trial.trial_config()
    else:
        chosen = _normal_run_config(config, user)
    if chosen.strategy == "fsdp":
        raise ConfigError(
            "strategy: fsdp is not applied by this autoaccel yet (DDP is); set "
            "strategy: ddp, or none for one process"
        )
    rank, world = _distributed()
    if chosen.processes > 1 and world == 1 and trial is None:
        warnings.warn(
            f"this config asks for DDP over {chosen.processes} processes; start the "
            "script with `autoaccel run script.py` (it uses torchrun). Running in "
            "one process.",
            stacklevel=2,
        )
    device = model_device(model)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        model.to(device)
    if chosen.num_threads is not None:
        torch.set_num_threads(chosen.num_threads)
    if chosen.precision == "tf32":
        torch.set_float32_matmul_precision("high")
    notes += _apply_lr_settings(optimizer, chosen, user, scheduler)
    if chosen.schedule != "constant" and total_steps is not None:
        chosen = replace(chosen, schedule_steps=total_steps)
    elif chosen.schedule != "constant" and trial is None:
        notes.append(
            f"the tuned {chosen.schedule} schedule decays over {chosen.schedule_steps} "
            "optimizer steps (as it was tuned); pass total_steps= to prepare() "
            "to stretch it over your whole run"
        )
    tuned_scheduler = build_scheduler(optimizer, chosen)
    if tuned_scheduler is not None and scheduler is not None:
        notes.append(
            "your own scheduler is used; the tuned schedule "
            f"({chosen.schedule}, {chosen.warmup_steps} warm-up steps) is not, because "
            "a scheduler passed to prepare() is explicit code"
        )
        tuned_scheduler = None
    loader = None
    if spec is not None:
        sampler: DistributedSampler[Any] | None = None
        if world > 1 and spec.sampler is None:
            sampler = DistributedSampler(
                spec.dataset,
                num_replicas=world,
                rank=rank,
                shuffle=spec.shuffle,
                drop_last=spec.drop_last,
            )
        loader = build_loader(spec, chosen, sampler=sampler)
    observer = None
    if trial is not None:
        report = {
            "user_config": user.knobs(),
            "parameter_count": sum(p.numel() for p in model.parameters()),
            "dataset_size": len(spec) if spec is not None else None,
            "conv_model": has_conv(model),
            "tensor_data": spec is not None and spec.tensors is not None,
            "device": str(device),
            "notes": notes,
            "optimizer": type(optimizer).__name__,
        }
        observer = TrialSession(
            trial, report, rank=rank, world=world, device=device, optimizer=optimizer
        )
        if trial.lr_sweep is not None:  # the sweep sets the LR of every step itself
            scheduler = tuned_scheduler = None
    elif notes and rank == 0:
        for note in notes:
            print(f"autoaccel: {note}", file=sys.stderr)
    return Run(
        model,
        optimizer,
        chosen,
        loader=loader,
        scheduler=scheduler or tuned_scheduler,
        device=device,
        observer=observer,
        distributed=world > 1,
    )


def _apply_lr_settings(
    optimizer: torch.optim.Optimizer, chosen: TrainingConfig, user: TrainingConfig, scheduler: Any
) -> list[str]:
    """The config's LR (tuned for its batch) or its scaling rule, and its momentum."""
    notes = []
    if chosen.lr is not None:
        notes += apply_lr(optimizer, chosen.lr, scheduler=scheduler)
    else:
        notes += scale_lr(
            optimizer,
            user.global_batch,
            chosen.global_batch,
            chosen.lr_scaling,
            scheduler=scheduler,
        )
    if chosen.momentum is not None:
        notes += apply_momentum(optimizer, chosen.momentum)
    return notes


def _normal_run_config(
    config: TrainingConfig | str | os.PathLike[str] | None, user: TrainingConfig
) -> TrainingConfig:
    if isinstance(config, TrainingConfig):
        return config
    path = find_config(config)
    if path is None:
        script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "train.py"
        print(_HINT.format(script=script), file=sys.stderr)
        return user
    profile = probe_system()
    loaded = load_config(path, profile=profile)
    mismatch = loaded.hardware_mismatch(profile)
    if mismatch:
        warnings.warn(mismatch, stacklevel=3)
    return loaded
