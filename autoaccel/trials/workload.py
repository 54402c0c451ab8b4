"""The caller's model, optimizer, data and loss as a ``Workload`` that trials train copies of.

``make_workload`` checks, before any search, that the model, the data and the loss fit
together (one forward pass on a copy, with errors that name the call and the shapes);
``resolve_loss`` decides how a batch becomes a loss (the caller's ``loss_fn``, the model's
own loss, or cross-entropy when unambiguous). ``Workload.fresh()`` gives each trial a copy of
the model and optimizer (``copy.deepcopy`` of the pair, so the optimizer keeps pointing at
the copy's parameters): the caller's weights and optimizer state are never changed.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autoaccel.config import TrainingConfig
from autoaccel.errors import DataError
from autoaccel.runtime.data import DataSpec, batch_samples, build_loader, move_batch
from autoaccel.runtime.device import apply_optimizer_impl, choose_device, cuda_count, place
from autoaccel.runtime.run import model_device

__all__ = ["LossPlan", "OptimizerLike", "Workload", "make_workload", "resolve_loss"]

OptimizerLike = torch.optim.Optimizer | Callable[[Any], torch.optim.Optimizer] | None


def _shapes(batch: Any) -> str:
    if isinstance(batch, torch.Tensor):
        return str(tuple(batch.shape))
    if isinstance(batch, Mapping):
        return "{" + ", ".join(f"{k}: {_shapes(v)}" for k, v in batch.items()) + "}"
    if isinstance(batch, (tuple, list)):
        return "[" + ", ".join(_shapes(v) for v in batch) + "]"
    return type(batch).__name__


def _as_loss(output: Any) -> torch.Tensor | None:
    """The loss inside a model's output, when the model computes it itself."""
    if isinstance(output, torch.Tensor) and output.dim() == 0 and output.is_floating_point():
        return output
    loss = getattr(output, "loss", None)
    if isinstance(loss, torch.Tensor) and loss.dim() == 0:
        return loss
    if isinstance(output, Mapping) and isinstance(output.get("loss"), torch.Tensor):
        return output["loss"]
    if isinstance(output, tuple) and output and isinstance(output[-1], torch.Tensor):
        last = output[-1]
        if last.dim() == 0 and last.is_floating_point():
            return last
    return None


def _positional_arity(model: nn.Module) -> int | None:
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


@dataclass(frozen=True)
class LossPlan:
    """How one batch becomes a loss: ``mode`` is "loss_fn", "model" or "cross_entropy"."""

    mode: str
    loss_fn: Callable[..., torch.Tensor] | None = None
    description: str = ""

    def __call__(self, model: nn.Module, batch: Any) -> torch.Tensor:
        if isinstance(batch, Mapping):
            output = model(**batch)
            if self.mode == "model":
                return _as_loss(output)  # type: ignore[return-value]
            raise DataError("dict batches need a model that returns its loss")
        items = batch if isinstance(batch, (tuple, list)) else (batch,)
        if self.mode == "model":
            return _as_loss(model(*items))  # type: ignore[return-value]
        output = model(*items[:-1])
        if self.mode == "cross_entropy":
            return F.cross_entropy(
                output.reshape(-1, output.shape[-1]).float(), items[-1].reshape(-1)
            )
        assert self.loss_fn is not None  # mode "loss_fn" is only built with one
        return self.loss_fn(output, items[-1])


def resolve_loss(
    model: nn.Module, batch: Any, loss_fn: Callable[..., torch.Tensor] | None
) -> LossPlan:
    """Decide how a batch becomes a loss, trying one forward pass on a model copy.

    Raises:
        DataError: the model fails on the batch (naming the call and the shapes), or no
            loss can be told apart when ``loss_fn`` is None.
    """
    shapes = _shapes(batch)
    items = batch if isinstance(batch, (tuple, list)) else (batch,)
    with torch.no_grad():
        if loss_fn is not None:
            if len(items) < 2:
                raise DataError(f"loss_fn needs batches of (inputs..., target), got {shapes}")
            output = _call(model, items[:-1], shapes, "model(*inputs)")
            try:
                loss = loss_fn(output, items[-1])
            except Exception as error:
                raise DataError(
                    f"loss_fn(output, target) failed for output {_shapes(output)} and target "
                    f"{_shapes(items[-1])}: {str(error).splitlines()[0]}"
                ) from error
            if not (isinstance(loss, torch.Tensor) and loss.dim() == 0):
                raise DataError(
                    f"loss_fn must return a scalar tensor, got {_shapes(loss)}; "
                    "use reduction='mean'"
                )
            return LossPlan("loss_fn", loss_fn, getattr(loss_fn, "__name__", "loss_fn"))
        if isinstance(batch, Mapping):
            if _as_loss(_call(model, batch, shapes, "model(**batch)")) is not None:
                return LossPlan("model", description="the model's own loss")
            raise DataError(
                f"model(**batch) did not return a loss for batch {shapes}; pass loss_fn=..."
            )
        arity = _positional_arity(model)
        if arity is None or arity >= len(items):
            try:
                own = _as_loss(model(*items))
            except Exception:
                own = None  # the model does not take the target: try inputs only below
            if own is not None:
                return LossPlan("model", description="the model's own loss")
        if len(items) < 2:
            raise DataError(
                f"batches of {shapes} hold no target and the model returns no "
                "loss; pass loss_fn=... or return the loss from forward()"
            )
        output = _call(model, items[:-1], shapes, "model(*inputs)")
        target = items[-1]
        if (
            isinstance(output, torch.Tensor)
            and output.is_floating_point()
            and output.dim() >= 2
            and isinstance(target, torch.Tensor)
            and not target.is_floating_point()
            and target.dtype != torch.bool
            and tuple(output.shape[:-1]) == tuple(target.shape)
        ):
            return LossPlan(
                "cross_entropy",
                description="cross-entropy (inferred: integer targets, one score per class)",
            )
        raise DataError(
            f"cannot tell which loss to use for model output {_shapes(output)} and target "
            f"{_shapes(target)}; pass loss_fn=... (e.g. torch.nn.functional.mse_loss)"
        )


def _call(model: nn.Module, inputs: Any, shapes: str, spelled: str) -> Any:
    try:
        return model(**inputs) if isinstance(inputs, Mapping) else model(*inputs)
    except Exception as error:
        raise DataError(
            f"{spelled} failed for batch shapes {shapes}: {str(error).splitlines()[0]}; "
            "check that the model and the data fit together"
        ) from error


def _default_optimizer(params: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3)


@dataclass
class Workload:
    """The caller's model, optimizer, data and loss, ready for trials."""

    model: nn.Module
    optimizer: OptimizerLike
    data: DataSpec
    loss: LossPlan
    device: torch.device
    seed: int = 0

    def fresh(
        self, config: TrainingConfig | None = None
    ) -> tuple[nn.Module, torch.optim.Optimizer, torch.device]:
        """A copy of the model and an optimizer on the copy, on the device ``config``
        decides (``autoaccel.runtime.device``; the model's own without one), in its
        optimizer implementation; the originals are untouched.

        Raises:
            ConfigError: the config names a GPU this machine does not have.
        """
        if isinstance(self.optimizer, torch.optim.Optimizer):
            model, optimizer = copy.deepcopy((self.model, self.optimizer))
        else:
            model = copy.deepcopy(self.model)
            optimizer = (self.optimizer or _default_optimizer)(model.parameters())
        model.train()
        if config is None:
            return model, optimizer, self.device
        device = self.device_for(config)
        if device != self.device:
            place(model, optimizer, device)
        apply_optimizer_impl(optimizer, config.optimizer_impl)
        return model, optimizer, device

    def device_for(self, config: TrainingConfig) -> torch.device:
        """Where a trial of ``config`` trains (``autoaccel.runtime.device``).

        Raises:
            ConfigError: the config names a GPU this machine does not have.
        """
        return choose_device(config.device, self.device, cuda_count=cuda_count()).device

    def user_config(self) -> TrainingConfig:
        """The caller's current setup as a config (their batch size, workers, threads, and
        the device the model is on)."""
        config = self.data.user_config()
        return replace(
            config,
            num_threads=torch.get_num_threads(),
            device=str(self.device),
            cudnn_benchmark=torch.backends.cudnn.benchmark,
        )

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def make_workload(
    model: nn.Module,
    data: DataSpec,
    *,
    loss_fn: Callable[..., Any] | None,
    optimizer: OptimizerLike,
    seed: int = 0,
) -> Workload:
    """Check the model, data and loss fit together, before any search.

    Raises:
        DataError: data on another device than the model, shapes that do not fit, or no
            loss that can be inferred.
    """
    if not isinstance(model, nn.Module):
        raise DataError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    device = model_device(model)
    if data.tensors is not None:
        # CPU tensors are moved to the model's device batch by batch; others cannot be.
        elsewhere = {t.device for t in data.tensors if t.device.type != "cpu"} - {device}
        if elsewhere:
            raise DataError(
                f"the data is on {sorted(map(str, elsewhere))[0]} but the model is on {device}; "
                f"move them to one device: model.to(device) or X.to('{device}')"
            )
    if isinstance(optimizer, torch.optim.Optimizer):
        owned = {id(p) for p in model.parameters()}
        if not all(id(p) in owned for g in optimizer.param_groups for p in g["params"]):
            raise DataError(
                "the optimizer holds parameters that are not the model's; "
                "build it from model.parameters()"
            )
    probe = build_loader(data, TrainingConfig(batch_size=min(data.batch_size, 4)))
    try:
        batch = next(iter(probe))
    except StopIteration:
        raise DataError(
            "the data gives no batch: the dataset is smaller than one batch with drop_last=True"
        ) from None
    batch = move_batch(batch, device)
    if batch_samples(batch) == 0:
        raise DataError(
            f"cannot count the samples in a batch of {_shapes(batch)}; batches "
            "must hold tensors whose first dimension is the batch"
        )
    loss = resolve_loss(copy.deepcopy(model).train(), batch, loss_fn)
    return Workload(model, optimizer, data, loss, device, seed)
