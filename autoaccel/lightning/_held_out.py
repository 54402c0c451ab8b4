"""A Lightning script's ``validation_step`` over its validation loader, as a tuner's
``evaluate`` hook: the batch-weighted mean of each value it logs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.data import extract_batch_size

from autoaccel.errors import DataError

__all__ = ["HeldOut"]


class HeldOut:
    """Your ``validation_step`` over your validation loader, called as a tuner's
    ``evaluate`` hook: the batch-weighted mean of each value it logs."""

    #: The names a validation loss goes by, in the order they are taken.
    LOSS_NAMES = ("val_loss", "val/loss", "validation_loss", "valid_loss", "loss")

    def __init__(self, trainer: pl.Trainer, module: pl.LightningModule, source: Any) -> None:
        self.trainer, self.module, self.source = trainer, module, source

    @classmethod
    def of(cls, trainer: pl.Trainer, module: pl.LightningModule, given: Any) -> HeldOut | None:
        """The scorer, or None when the script has no validation_step or no validation
        loader (passed to fit, or from the datamodule's or the module's val_dataloader)."""
        if type(module).validation_step is pl.LightningModule.validation_step:
            return None
        datamodule = getattr(trainer, "datamodule", None)  # set by fit(datamodule=)
        if given is not None:
            return cls(trainer, module, lambda: given)
        if datamodule is not None and _overrides(datamodule, pl.LightningDataModule):
            return cls(trainer, module, datamodule.val_dataloader)
        if _overrides(module, pl.LightningModule):
            return cls(trainer, module, module.val_dataloader)
        return None

    def __call__(self) -> dict[str, float]:
        logged = Logged()
        module = self.module
        module.log, module.log_dict = logged.log, logged.log_dict  # type: ignore[method-assign, assignment]
        try:
            found = self.source()
            loaders = list(found) if isinstance(found, (list, tuple)) else [found]
            for index, loader in enumerate(loaders):
                more = {"dataloader_idx": index} if len(loaders) > 1 else {}
                for i, batch in enumerate(loader):
                    logged.size = extract_batch_size(batch)
                    batch = self.trainer.strategy.batch_to_device(batch)
                    with self.trainer.precision_plugin.val_step_context():
                        logged.returned(module.validation_step(batch, i, **more))
        finally:
            del module.log, module.log_dict
        means = logged.means()
        short = {_short(name): value for name, value in means.items()}
        return {**short, **means, "loss": self._loss(means, logged)}

    def _loss(self, means: dict[str, float], logged: Logged) -> float:
        named = [name for name in self.LOSS_NAMES if name in means]
        losses = named[:1] or [name for name in means if "loss" in name.lower()]
        if len(losses) == 1:
            return means[losses[0]]
        if not losses and logged.returns:
            return sum(v * w for v, w in logged.returns) / sum(w for _, w in logged.returns)
        found = ", ".join(means) or "nothing"
        raise DataError(
            f"validation_step logged {found}: autoaccel scores the held-out loss logged as "
            "val_loss (self.log('val_loss', loss)) or returned"
        )


class Logged:
    """What ``validation_step`` logs over a loader: sums weighted by batch size."""

    def __init__(self) -> None:
        self.size = 1  # the batch's samples, the weight of what it logs
        self.sums: dict[str, float] = {}
        self.weights: dict[str, float] = {}
        self.metrics: dict[str, Any] = {}  # torchmetrics objects: computed at the end
        self.returns: list[tuple[float, float]] = []

    def log(
        self, name: str, value: Any, *args: Any, batch_size: int | None = None, **_: Any
    ) -> None:
        if hasattr(value, "compute") and hasattr(value, "reset"):
            self.metrics[name] = value
            return
        weight = float(batch_size or self.size)
        self.sums[name] = self.sums.get(name, 0.0) + float(value) * weight
        self.weights[name] = self.weights.get(name, 0.0) + weight

    def log_dict(self, values: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
        for name, value in values.items():
            self.log(name, value, batch_size=kwargs.get("batch_size"))

    def returned(self, out: Any) -> None:
        loss = out.get("loss") if isinstance(out, Mapping) else out
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self.returns.append((float(loss), float(self.size)))

    def means(self) -> dict[str, float]:
        found = {name: total / self.weights[name] for name, total in self.sums.items()}
        for name, metric in self.metrics.items():
            found[name] = float(metric.compute())
            metric.reset()
        return found


def _short(name: str) -> str:
    """A logged name without its validation prefix: val_accuracy -> accuracy."""
    for prefix in ("validation_", "validation/", "valid_", "val_", "val/"):
        if name.startswith(prefix):
            return name.removeprefix(prefix)
    return name


def _overrides(source: Any, base: Any) -> bool:
    """Whether ``source`` defines val_dataloader (Lightning's own raises or returns [])."""
    return type(source).val_dataloader is not base.val_dataloader
