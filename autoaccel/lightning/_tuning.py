"""What one ``autoaccel.lightning.Trainer`` applies and when: your explicit arguments
against the config (``PINNED_BY``), the rebuilt training loader, the LR settings and the
tuned schedule once the optimizers exist, and a trial's session through its callback."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.data import extract_batch_size
from lightning.pytorch.utilities.parsing import lightning_hasattr, lightning_setattr
from torch.utils.data import DataLoader, default_collate

from autoaccel.config import TrainingConfig
from autoaccel.errors import DataError, UsageError
from autoaccel.export import lightning_trainer_args
from autoaccel.lightning._held_out import HeldOut
from autoaccel.process import apply_process_settings
from autoaccel.runtime.data import DataSpec, build_loader, describe_data
from autoaccel.runtime.device import apply_optimizer_impl
from autoaccel.runtime.prepare import (
    apply_lr_settings,
    for_this_model,
    hook_facts,
    run_config,
    trial_facts,
    trial_session,
    tuned_schedule,
)
from autoaccel.runtime.run import StepObserver, has_conv
from autoaccel.schedule import hold_after
from autoaccel.trials.protocol import TrialSpec

__all__ = ["PINNED_BY", "PRECISIONS", "Tuning", "TuningCallback"]

#: Trainer argument -> (the knob it sets, Lightning's default: a value that pins nothing).
PINNED_BY: dict[str, tuple[str, Any]] = {
    "accelerator": ("device", "auto"),
    "devices": ("processes", "auto"),
    "strategy": ("processes", "auto"),
    "precision": ("precision", None),
    "accumulate_grad_batches": ("grad_accum_steps", 1),
    "benchmark": ("cudnn_benchmark", None),
}

#: Lightning's older spellings of the precisions autoaccel measures.
PRECISIONS = {
    32: "32-true",
    "32": "32-true",
    "32-true": "32-true",
    16: "16-mixed",
    "16": "16-mixed",
    "16-mixed": "16-mixed",
    "bf16": "bf16-mixed",
    "bf16-mixed": "bf16-mixed",
}


class Tuning:
    """What one Trainer applies: the config (None: your own settings), your explicit
    arguments, the trial (None in a normal run), and what training start needs."""

    def __init__(
        self,
        chosen: TrainingConfig | None,
        given: dict[str, Any],
        trial: TrialSpec | None,
        threads: int,
    ) -> None:
        self.chosen, self.given, self.trial, self.threads = chosen, given, trial, threads
        self.notes: list[str] = []
        self.spec: DataSpec | None = None  # the training data as your loader had it
        self.observer: StepObserver | None = None
        self.scheduler: Any = None  # the tuned schedule, stepped per optimizer step
        self.steps_seen = 0
        self.val_loaders: Any = None  # passed to fit(), if any
        self.length: dict[str, Any] = {}  # your max_steps, max_epochs, limit_train_batches
        self.limits_set = False  # the trial's loop limits are in place (Lightning's setup)

    @classmethod
    def start(
        cls, kwargs: dict[str, Any], config: TrainingConfig | str | os.PathLike[str] | None
    ) -> Tuning:
        """Read the trial or the config, and set the process settings it holds."""
        _check_precision(kwargs.get("precision"))
        threads = torch.get_num_threads()
        trial, chosen = run_config(config)
        given = {k: v for k, v in kwargs.items() if k in PINNED_BY and v != PINNED_BY[k][1]}
        tuning = cls(chosen, given, trial, threads)
        if chosen is not None:
            apply_process_settings(chosen)
        return tuning

    # --- the Trainer's arguments ---------------------------------------------------------

    def trainer_args(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` with the config's Trainer arguments; yours win where you gave one
        (a normal run says so when they differ)."""
        self.length = {k: kwargs.get(k) for k in ("max_steps", "max_epochs", "limit_train_batches")}
        if self.trial is not None:
            # A trial trains until its session has measured it, and leaves nothing behind:
            # no logs, no checkpoints.
            kwargs |= {"max_epochs": -1, "max_steps": -1, "max_time": None, "logger": False}
            kwargs |= {"enable_checkpointing": False}
            # The trial scores held-out data at its own times (``HeldOut``); Lightning's
            # validation would pause its measured steps.
            kwargs |= {"limit_val_batches": 0, "num_sanity_val_steps": 0}
        if self.chosen is None:
            return kwargs
        tuned = lightning_trainer_args(self.chosen)
        for name, value in tuned.items():
            if name not in self.given:
                kwargs[name] = value
            elif _same(name, self.given[name], value):
                continue
            elif name != "strategy" or "devices" not in self.given:
                self.notes.append(
                    f"Trainer({name}={self.given[name]!r}) wins over the config's {value!r} "
                    "(leave the argument out to apply the tuned value)"
                )
        return kwargs

    def fixed(self) -> dict[str, str]:
        """The knobs your explicit arguments pin, with why: the tuner does not search them."""
        found: dict[str, str] = {}
        for name, value in self.given.items():
            knob = PINNED_BY[name][0]
            words = f"Trainer({name}={value!r}) in your script sets it"
            found[knob] = f"{found[knob]}; {words}" if knob in found else words
        found["compile"] = "autoaccel.lightning.Trainer does not compile: compile in your module"
        return found

    def user_config(self, device: torch.device) -> TrainingConfig:
        """Your own settings as a config: the loader's, and your Trainer arguments'."""
        if self.spec is None:
            raise UsageError(
                "autoaccel.lightning.Trainer found no training DataLoader; return one from "
                "train_dataloader() or pass it to fit()"
            )
        processes = _processes(self.given, device)
        strategy = str(self.given.get("strategy", "ddp"))
        return replace(
            self.spec.user_config(),
            grad_accum_steps=int(self.given.get("accumulate_grad_batches", 1)),
            precision=PRECISIONS[self.given.get("precision") or "32-true"],
            processes=processes,
            strategy=("fsdp" if "fsdp" in strategy else "ddp") if processes > 1 else "none",
            num_threads=self.threads,
            device=device.type,
            cudnn_benchmark=bool(self.given.get("benchmark", torch.backends.cudnn.benchmark)),
        )

    def own_limits(self) -> tuple[int, int]:
        """Your ``max_epochs`` and ``max_steps`` as Lightning reads them (neither given:
        its default of 1000 epochs; only ``max_steps``: as many epochs as it takes)."""
        steps, epochs = self.length.get("max_steps"), self.length.get("max_epochs")
        steps = steps if isinstance(steps, int) and steps > 0 else -1
        if not isinstance(epochs, int):
            epochs = 1000 if steps == -1 else -1
        return epochs, steps

    def own_samples(self, user: TrainingConfig) -> int | None:
        """The samples your Trainer arguments train: ``max_steps`` optimizer steps of your
        global batch, or ``max_epochs`` passes over the data (``limit_train_batches`` of
        each); None when you set neither (Lightning's 1000 epochs are no plan of yours)."""
        steps, epochs = self.length.get("max_steps"), self.length.get("max_epochs")
        if isinstance(steps, int) and steps > 0:
            return steps * user.global_batch
        if not isinstance(epochs, int) or epochs <= 0 or self.spec is None:
            return None
        per_epoch = len(self.spec)
        limit = self.length.get("limit_train_batches")
        if isinstance(limit, float) and 0 < limit < 1:
            per_epoch = round(per_epoch * limit)
        elif isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            per_epoch = min(per_epoch, limit * user.batch_size * user.processes)
        return epochs * per_epoch

    # --- the training data ---------------------------------------------------------------

    def loader(self, loader: Any, model: pl.LightningModule) -> DataLoader[Any]:
        """Your training loader, rebuilt with the config's batch and loader settings (as
        it is, for the baseline and with no config); the ``batch_size`` attribute of the
        module or datamodule, where one has it, set to match."""
        if not isinstance(loader, DataLoader):
            raise UsageError(
                "autoaccel.lightning.Trainer tunes one training DataLoader; train_dataloader() "
                f"returned {type(loader).__name__}: return a single DataLoader"
            )
        try:
            self.spec = describe_data(loader)
        except DataError as error:
            raise UsageError(f"autoaccel.lightning.Trainer: {error}") from None
        if self.chosen is None:
            return loader
        chosen = replace(self.chosen, batch_fetch=False)
        spec = self.spec
        if chosen.channels_last:
            spec = replace(spec, collate_fn=_ChannelsLast(spec.collate_fn or default_collate))
        if lightning_hasattr(model, "batch_size"):  # the module, its hparams, the datamodule
            lightning_setattr(model, "batch_size", chosen.batch_size)
        return build_loader(spec, chosen)

    def wrap(self, source: Any, model: pl.LightningModule) -> None:
        """Make ``source.train_dataloader()`` hand over the rebuilt loader."""
        original: Callable[[], Any] = source.train_dataloader

        def train_dataloader() -> DataLoader[Any]:
            return self.loader(original(), model)

        source.train_dataloader = train_dataloader

    # --- when training starts ------------------------------------------------------------

    def training_starts(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """Optimizers exist now: apply the LR settings and the schedule; in a trial, start
        its session."""
        device = module.device
        user = self.user_config(device)
        chosen = for_this_model(self.chosen, module) if self.chosen is not None else user
        optimizers = list(trainer.optimizers)
        if not optimizers:
            raise UsageError("configure_optimizers() returned no optimizer: nothing to tune")
        own = [config.scheduler for config in trainer.lr_scheduler_configs]
        notes = list(self.notes)
        if self.chosen is not None:
            for optimizer in optimizers:
                refused = apply_optimizer_impl(optimizer, chosen.optimizer_impl)
                notes += [refused] if refused else []
                notes += apply_lr_settings(optimizer, chosen, user, own[0] if own else None)
            total = trainer.estimated_stepping_batches
            steps = int(total) if math.isfinite(total) else None
            _, self.scheduler = tuned_schedule(
                optimizers[0], chosen, own[0] if own else None, steps, self.trial, notes
            )
        if self.trial is None:
            if trainer.is_global_zero:
                for note in dict.fromkeys(notes):
                    print(f"autoaccel: {note}", file=sys.stderr)
            return
        _held_after_your_training(trainer, *self.own_limits())
        evaluate = HeldOut.of(trainer, module, self.val_loaders)
        facts = trial_facts(module, optimizers[0], self.spec, user, device, notes)
        facts |= {"tensor_data": False, "fixed": self.fixed()}
        facts["own_samples"] = self.own_samples(user)
        facts |= hook_facts(self.trial, module, evaluate, "validation_step")
        processes = (trainer.global_rank, trainer.world_size)
        self.observer = trial_session(
            self.trial, facts, module, optimizers[0], evaluate, chosen, processes, device
        )
        if self.trial.lr_sweep is not None:  # the sweep sets each step's LR itself
            self.scheduler = None
        self.steps_seen = trainer.global_step


def _held_after_your_training(trainer: pl.Trainer, epochs: int, steps: int) -> None:
    """In a trial, each scheduler of yours stops stepping once your own training is done
    (your ``epochs`` / ``steps``: ``Trainer.estimated_stepping_batches`` for one stepped per
    optimizer step, your epochs for one stepped per epoch), its LR held at your last
    step's (``hold_after``): a trial trains on until it is measured."""
    total = trainer.estimated_stepping_batches
    for config in trainer.lr_scheduler_configs:
        if config.interval == "step" and math.isfinite(total):
            span = int(total)
        elif config.interval == "epoch" and epochs > 0 and steps == -1:
            span = epochs
        else:
            continue
        hold_after(config.scheduler, span // max(int(config.frequency), 1))


class TuningCallback(pl.Callback):
    """The Trainer's own callback: channels_last, training start, and a trial's meter."""

    def __init__(self, tuning: Tuning) -> None:
        self.tuning = tuning

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Lightning has set the fit loop's limits from max_epochs by now (``Trainer._run``)
        self.tuning.limits_set = stage == "fit"
        chosen = self.tuning.chosen
        if stage == "fit" and chosen is not None and chosen.channels_last and has_conv(pl_module):
            pl_module.to(memory_format=torch.channels_last)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.tuning.training_starts(trainer, pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.tuning.observer is not None:
            self.tuning.observer.fetch_start()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.tuning.observer is not None:
            self.tuning.observer.fetch_end(extract_batch_size(batch))

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        tuning = self.tuning
        if tuning.scheduler is not None and trainer.global_step > tuning.steps_seen:
            tuning.scheduler.step()  # once per optimizer step
        tuning.steps_seen = trainer.global_step
        if tuning.observer is not None:
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            size = extract_batch_size(batch)
            tuning.observer.step_end(loss if isinstance(loss, torch.Tensor) else None, size)
            tuning.observer.fetch_start()


class _ChannelsLast:
    """A collate function whose 4-d tensors come out in channels_last (a class: loader
    workers pickle it)."""

    def __init__(self, collate: Callable[[list[Any]], Any]) -> None:
        self.collate = collate

    def __call__(self, samples: list[Any]) -> Any:
        return _to_channels_last(self.collate(samples))


def _to_channels_last(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_channels_last(b) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_channels_last(v) for k, v in batch.items()}
    return batch


def _check_precision(precision: Any) -> None:
    if precision is not None and precision not in PRECISIONS:
        raise UsageError(
            f"Trainer(precision={precision!r}) is not a precision autoaccel measures; use "
            "32-true, bf16-mixed or 16-mixed, or lightning.Trainer to train without autoaccel"
        )


def _same(name: str, given: Any, tuned: Any) -> bool:
    """Whether your explicit argument already says what the config does."""
    if name == "precision":
        return PRECISIONS.get(given) == tuned
    if name == "accelerator" and given in ("gpu", "cuda"):
        return tuned == "gpu"
    return bool(given == tuned)


def _processes(given: dict[str, Any], device: torch.device) -> int:
    """How many processes your own arguments train in (Lightning's "auto": every GPU, one
    process on the CPU)."""
    devices = given.get("devices", "auto")
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    if isinstance(devices, int) and devices > 0:
        return devices
    return max(1, torch.cuda.device_count()) if device.type == "cuda" else 1
