"""Lightning scripts tuned with one changed line.

    import lightning as L               # before
    import autoaccel.lightning as L     # after: L.Trainer is autoaccel's, the rest Lightning's

(or ``lightning.Trainer(...)`` -> ``autoaccel.lightning.Trainer(...)``). This module is
``lightning`` with its ``Trainer`` replaced: every other name is looked up in ``lightning``.

``autoaccel tune train.py`` then measures the script's trials and a normal run applies
``autoaccel.yaml``. A subclass, not a callback: what Lightning fixes when the Trainer is
built (precision, accelerator, devices and strategy, accumulation) cannot be set by a
callback, which is handed a Trainer already built; the subclass takes the same arguments
and adds its own callback.

What it applies, and how:

- precision, accelerator, devices/strategy (processes, launched as Lightning launches
  them: under torchrun in a trial or ``autoaccel run``, its own launcher otherwise),
  accumulation: as Trainer arguments (``autoaccel.export.lightning_trainer_args``);
- threads, cuDNN autotuning, TF32 matmuls: process settings, set before the Trainer is;
- batch size and loader workers, pinning, persistence, prefetch: the training DataLoader
  that ``train_dataloader()`` (or ``fit``) hands over is rebuilt with them, as Lightning
  rebuilds it to add a distributed sampler; the module's or datamodule's ``batch_size``
  attribute, where it has one (where Lightning's BatchSizeFinder looks), is set to match;
- memory format: the module and each batch in channels_last;
- optimizer implementation, LR (or its scaling with the batch), momentum and the tuned
  schedule: on the optimizers ``configure_optimizers`` made, when training starts; a
  scheduler of your own wins over the tuned one (said once).

Under ``autoaccel tune`` a trial trains until it is measured (no epoch or step limit),
logs and checkpoints nothing and runs no validation loop of Lightning's; it then ends the
script, as ``prepare()`` does. Your ``validation_step`` over your validation loader is the
held-out score of a tuner's loss curves (``--objective time-to-loss`` needs no hook of its
own): the batch-weighted mean of each value it logs, the loss being the one logged value
named as a loss (``val_loss``), and each metric also under its name without ``val_``
(``--metric accuracy`` finds ``val_accuracy``).

A Trainer argument you pass with a value other than Lightning's default pins what it sets:
your value wins over the config, a normal run says so in one line, and ``autoaccel tune``
does not search it. ``torch.compile`` is not applied (compile in your module).
"""

from __future__ import annotations

import os
from typing import Any

import lightning
import lightning.pytorch as pl

from autoaccel.config import TrainingConfig
from autoaccel.errors import UsageError
from autoaccel.lightning._tuning import PINNED_BY, Tuning, TuningCallback

__all__ = ["PINNED_BY", "Trainer"]


def __getattr__(name: str) -> Any:
    """Every other name is Lightning's (``L.LightningModule``, ``L.seed_everything``, ...),
    so ``import autoaccel.lightning as L`` is the one line a script changes."""
    return getattr(lightning, name)


class Trainer(pl.Trainer):
    """``lightning.Trainer`` that runs with ``autoaccel.yaml`` (or a tuner's trial).

    Args:
        autoaccel_config: A ``TrainingConfig`` or the path of a config; the default looks
            for autoaccel.yaml as ``prepare()`` does.
        **kwargs: ``lightning.Trainer``'s arguments, unchanged.

    Raises:
        UsageError: positional arguments, a precision autoaccel does not measure, or a
            config whose strategy Lightning cannot run here (FSDP on the CPU).

    Example:
        >>> trainer = autoaccel.lightning.Trainer(max_epochs=3)   # doctest: +SKIP
        >>> trainer.fit(model, datamodule=data)                  # doctest: +SKIP
    """

    def __init__(
        self,
        *args: Any,
        autoaccel_config: TrainingConfig | str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if args:
            raise UsageError(
                "autoaccel.lightning.Trainer takes its arguments by name, as lightning.Trainer "
                "does (e.g. Trainer(max_epochs=3))"
            )
        self._autoaccel = Tuning.start(kwargs, autoaccel_config)
        callbacks = [*(kwargs.pop("callbacks", None) or []), TuningCallback(self._autoaccel)]
        super().__init__(**self._autoaccel.trainer_args(kwargs), callbacks=callbacks)

    def fit(
        self,
        model: pl.LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: pl.LightningDataModule | None = None,
        ckpt_path: Any = None,
        weights_only: bool | None = None,
    ) -> None:
        """``lightning.Trainer.fit``, with the training loader rebuilt as the config says
        (where it comes from: the loader passed here, the datamodule or the module)."""
        if isinstance(train_dataloaders, pl.LightningDataModule):
            train_dataloaders, datamodule = None, train_dataloaders
        self._autoaccel.val_loaders = val_dataloaders
        if train_dataloaders is not None:
            train_dataloaders = self._autoaccel.loader(train_dataloaders, model)
        else:
            source: Any = datamodule if _defines_train_loader(datamodule) else model
            self._autoaccel.wrap(source, model)
        # weights_only is new in Lightning 2.5: passed on only when given
        more = {"weights_only": weights_only} if weights_only is not None else {}
        super().fit(model, train_dataloaders, val_dataloaders, datamodule, ckpt_path, **more)

    @property
    def max_epochs(self) -> int | None:
        """Lightning's ``max_epochs``; in a trial, once its loop limits are set (the trial
        trains until it is measured: -1), your own, as a ``configure_optimizers`` that
        sizes a schedule by it (``CosineAnnealingLR(T_max=self.trainer.max_epochs)``)
        reads it in a normal run. With -1 that cosine climbs back to its peak LR every
        other epoch."""
        if self._autoaccel.trial is not None and self._autoaccel.limits_set:
            return self._autoaccel.own_limits()[0]
        return super().max_epochs

    @property
    def max_steps(self) -> int:
        """Lightning's ``max_steps``; in a trial, once its loop limits are set (the trial
        trains until it is measured: -1), your own, as a ``configure_optimizers`` that
        sizes a schedule by it (``get_linear_schedule_with_warmup(..., self.trainer.
        max_steps)``, ``OneCycleLR(total_steps=self.trainer.max_steps)``) reads it in a
        normal run. With -1 the linear decay trained at LR 0 and OneCycleLR raised. The
        trial's own loop still runs on (``fit_loop.max_steps`` stays -1)."""
        if self._autoaccel.trial is not None and self._autoaccel.limits_set:
            return self._autoaccel.own_limits()[1]
        return super().max_steps

    @property
    def estimated_stepping_batches(self) -> int | float:
        """Lightning's estimate of the optimizer steps training makes; in a trial, which
        trains until it is measured (``max_epochs`` -1), the steps your own ``max_epochs`` /
        ``max_steps`` make at the trial's batch, as Lightning counts them. A scheduler your
        ``configure_optimizers`` sizes by it (Lightning's own OneCycleLR recipe) then spans
        your training, as it would in a normal run: Lightning's answer in a trial, infinity,
        made OneCycleLR raise and every trial fail."""
        if self._autoaccel.trial is None:
            return super().estimated_stepping_batches
        loop, steps = self.fit_loop, self.fit_loop.epoch_loop  # max_steps lives in the latter
        held = loop.max_epochs, steps.max_steps
        loop.max_epochs, steps.max_steps = self._autoaccel.own_limits()
        try:
            return super().estimated_stepping_batches
        finally:
            loop.max_epochs, steps.max_steps = held


def _defines_train_loader(datamodule: pl.LightningDataModule | None) -> bool:
    if datamodule is None:
        return False
    own = type(datamodule).train_dataloader
    return own is not pl.LightningDataModule.train_dataloader
