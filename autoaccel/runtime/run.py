"""Applying a ``TrainingConfig`` to a model and optimizer: the ``Run`` object.

``advise()`` builds a ``Run`` per trial on copies of the caller's model and optimizer;
``prepare()`` builds one for a normal run or a tuner's trial. Both go through this code:

- precision is ``torch.autocast`` (GradScaler for fp16 on CUDA; TF32 through matmul
  precision);
- ``channels_last`` applies to models with conv layers and to their 4-D inputs;
- ``torch.compile`` wraps the model (its compile time shows up as warm-up);
- ``backward``/``step`` handle gradient accumulation;
- ``train_step`` is the standard step (forward and loss under autocast, backward, step)
  that in-process trials and time-to-loss runs drive;
- process-wide settings (threads, matmul precision) live in ``autoaccel.process``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from autoaccel.config import TrainingConfig
from autoaccel.errors import DataError
from autoaccel.runtime.data import batch_samples, loader_view, move_batch
from autoaccel.states import Precision

__all__ = [
    "PreparedLoader",
    "Run",
    "StepObserver",
    "endless",
    "has_conv",
    "model_device",
    "model_fingerprint",
    "shard",
]


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of the model's parameter names and shapes: which model a config was
    tuned for (weights and device do not count).

    Example:
        >>> model_fingerprint(nn.Linear(4, 2)) == model_fingerprint(nn.Linear(4, 2))
        True
        >>> model_fingerprint(nn.Linear(4, 2)) == model_fingerprint(nn.Linear(4, 3))
        False
    """
    shapes = ";".join(f"{name}:{tuple(p.shape)}" for name, p in model.named_parameters())
    return hashlib.sha256(shapes.encode()).hexdigest()[:12]


def shard(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """FSDP2 (``torch.distributed.fsdp.fully_shard``) in place: each child module that
    holds parameters is a unit of its own (its parameters are gathered just for its forward
    and backward), then the root; the optimizer then steps the shards.

    ``fully_shard`` replaces each parameter by a sharded one (a DTensor), so the optimizer's
    groups are pointed at the new parameters, by name; its options stay as they were.

    Raises:
        ConfigError: the optimizer has stepped already (its state is of whole parameters).
    """
    from torch.distributed.fsdp import fully_shard

    from autoaccel.errors import ConfigError

    if optimizer.state:
        raise ConfigError(
            "strategy: fsdp shards the parameters, and this optimizer has stepped already; "
            "call prepare() before the first optimizer step"
        )
    names = {id(p): name for name, p in model.named_parameters()}
    for child in model.children():
        if any(True for _ in child.parameters()):
            fully_shard(child)
    fully_shard(model)
    sharded = dict(model.named_parameters())
    for group in optimizer.param_groups:
        group["params"] = [sharded[names[id(p)]] if id(p) in names else p for p in group["params"]]


def has_conv(model: nn.Module) -> bool:
    """Whether channels_last can matter: the model has 2-D convolutions."""
    return any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())


_AUTOCAST_DTYPES = {Precision.BF16_MIXED: torch.bfloat16, Precision.FP16_MIXED: torch.float16}
_NO_AUTOCAST = contextlib.nullcontext()  # reusable: one object for every step


class Run:
    """A model, optimizer and loader prepared with a config; the loop calls its methods.

    ``run.backward(loss)`` scales (fp16) and divides the loss for gradient accumulation;
    ``run.step()`` steps the optimizer (and scheduler) once every ``grad_accum_steps``
    micro-batches, then zeroes the gradients.

    Example:
        >>> model = nn.Linear(4, 2)
        >>> run = Run(model, torch.optim.SGD(model.parameters(), lr=0.1), TrainingConfig())
        >>> with run.autocast():
        ...     loss = model(torch.randn(8, 4)).sum()
        >>> run.backward(loss); run.step()
        True
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        config: TrainingConfig,
        *,
        loader: DataLoader[Any] | None = None,
        scheduler: Any = None,
        device: torch.device | None = None,
        observer: StepObserver | None = None,
        distributed: bool = False,
    ) -> None:
        self.config = config
        self.device = device or model_device(model)
        # Computed once: has_conv walks every module.
        self._channels_last = config.channels_last and has_conv(model)
        if self._channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.sharded = distributed and config.strategy == "fsdp"
        if self.sharded:
            shard(model, optimizer)  # before compile, as torch recommends
        elif distributed:
            # DDP before compile, as torch recommends; gradients all-reduce across processes.
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.distributed = distributed
        self.model: nn.Module = torch.compile(model) if config.compile else model  # type: ignore[assignment]
        self.observer = observer
        self.optimizer = optimizer
        self.scheduler = scheduler
        self._prepared_loader = (
            PreparedLoader(
                loader,
                device=self.device,
                channels_last=self._channels_last,
                observer=observer,
            )
            if loader is not None
            else None
        )
        self.batch_size = config.batch_size
        self.grad_accum_steps = config.grad_accum_steps
        self._micro_step = 0
        self.optimizer_steps = 0
        dtype = _AUTOCAST_DTYPES.get(Precision(config.precision))
        self._autocast_dtype = dtype
        self._scaler = (
            torch.amp.GradScaler(self.device.type)
            if config.precision == Precision.FP16_MIXED and self.device.type == "cuda"
            else None
        )
        self._last_loss: torch.Tensor | None = None

    @property
    def _sharded_module(self) -> Any:
        """The FSDP2 root (``torch.compile`` keeps it as ``_orig_mod``)."""
        return getattr(self.model, "_orig_mod", self.model)

    @property
    def loader(self) -> PreparedLoader:
        """The batches, on ``run.device`` in the chosen layout; re-iterable like a DataLoader.

        Raises:
            DataError: the run was prepared without data (the script batches by itself).
        """
        if self._prepared_loader is None:
            raise DataError(
                "this run was prepared without data, so it has no loader; "
                "pass data to prepare(model, optimizer, data) or batch by yourself"
            )
        return self._prepared_loader

    def close(self) -> None:
        """Let go of the loader, so its worker processes end now rather than at exit."""
        if self._prepared_loader is not None:
            self._prepared_loader.close()
        self._prepared_loader = None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The chosen precision as a context manager (a no-op in 32-true and tf32)."""
        if self._autocast_dtype is None:
            return _NO_AUTOCAST
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """Backward through ``loss``, scaled for fp16 and divided for accumulation."""
        if self.observer is not None:  # only the meter reads it; a normal run skips the copy
            self._last_loss = loss.detach()
        if self._scaler is None and self.grad_accum_steps == 1:
            loss.backward()  # the common case, kept as short as the hand-written loop
            return
        if self.grad_accum_steps > 1:
            loss = loss / self.grad_accum_steps
        scaled = self._scaler.scale(loss) if self._scaler is not None else loss
        last_micro_step = (self._micro_step + 1) % self.grad_accum_steps == 0
        if self.sharded:  # FSDP2: gradients reduce-scatter only on the last micro-batch
            self._sharded_module.set_requires_gradient_sync(last_micro_step)
            scaled.backward()
        elif self.distributed and not last_micro_step:
            with self.model.no_sync():  # type: ignore[operator]
                scaled.backward()  # gradients all-reduce only on the last micro-batch
        else:
            scaled.backward()

    def train_step(
        self, compute_loss: Callable[[nn.Module, Any], torch.Tensor], batch: Any
    ) -> torch.Tensor:
        """One standard step on ``batch``: the loss (``compute_loss(run.model, batch)``) in
        the chosen precision, backward, then ``step()``; returns the loss."""
        with self.autocast():
            loss = compute_loss(self.model, batch)
        self.backward(loss)
        self.step()
        return loss

    def step(self) -> bool:
        """End a micro-batch; steps the optimizer when enough have accumulated.

        Returns:
            True when the optimizer stepped.
        """
        self._micro_step += 1
        stepped = self.grad_accum_steps == 1 or self._micro_step % self.grad_accum_steps == 0
        if stepped:
            if self._scaler is not None:
                self._scaler.step(self.optimizer)
                self._scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.scheduler is not None:
                self.scheduler.step()
            self.optimizer_steps += 1
        if self.observer is not None:
            # Last, so the optimizer's work counts in this step's time.
            self.observer.step_end(self._last_loss, self.batch_size)
        return stepped


class PreparedLoader:
    """``run.loader``: the DataLoader built from the config, used as the script used its own.

    Like a DataLoader it can be kept in a variable: each ``iter()`` starts a new epoch,
    ``len()`` is the number of batches, and ``.dataset``, ``.batch_size``, ``.sampler`` and
    ``.drop_last`` are the script's own (with ``batch_fetch`` too, which batches by index
    internally); other attributes are the DataLoader's. Batches arrive on the run's device,
    4-D inputs channels-last when the config says so, and a tuner's meter sees each fetch.

    Example:
        >>> model = nn.Linear(4, 2)
        >>> data = DataLoader(torch.utils.data.TensorDataset(torch.randn(10, 4)), batch_size=4)
        >>> run = Run(model, torch.optim.SGD(model.parameters(), lr=0.1), TrainingConfig(),
        ...           loader=data)
        >>> loader = run.loader
        >>> len(loader), [sum(1 for _ in loader) for epoch in range(2)]
        (3, [3, 3])
    """

    def __init__(
        self,
        loader: DataLoader[Any],
        *,
        device: torch.device,
        channels_last: bool,
        observer: StepObserver | None,
    ) -> None:
        self._loader: DataLoader[Any] | None = loader
        self.dataset, self.batch_size, self.sampler, self.drop_last = loader_view(loader)
        self._device = device
        self._channels_last = channels_last
        self._observer = observer
        # Nothing to move, convert or time: the DataLoader's own iterator is handed over.
        self._untouched = observer is None and device.type == "cpu" and not channels_last

    def __iter__(self) -> Iterator[Any]:
        loader = self._open()
        if self._untouched:
            return iter(loader)
        return self._moved(iter(loader), non_blocking=loader.pin_memory)

    def __len__(self) -> int:
        return len(self._open())

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this object lacks: num_workers, pin_memory, collate_fn, ...
        if name.startswith("__") or name == "_loader":
            raise AttributeError(name)
        return getattr(self._open(), name)

    def set_epoch(self, epoch: int) -> None:
        """Tell a ``DistributedSampler`` (or any sampler with ``set_epoch``) the epoch, so
        each epoch is shuffled differently across processes; a no-op for other samplers."""
        set_epoch = getattr(self.sampler, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)

    def close(self) -> None:
        """Let go of the DataLoader (its persistent workers end with it)."""
        self._loader = None

    def _open(self) -> DataLoader[Any]:
        if self._loader is None:
            raise DataError(
                "run.loader was used after run.close(); prepare the run again to train more"
            )
        return self._loader

    def _moved(self, batches: Iterator[Any], *, non_blocking: bool) -> Iterator[Any]:
        observer = self._observer
        while True:
            if observer is not None:
                observer.fetch_start()
            try:
                batch = next(batches)
            except StopIteration:
                return
            batch = move_batch(
                batch, self._device, channels_last=self._channels_last, non_blocking=non_blocking
            )
            if observer is not None:
                observer.fetch_end(batch_samples(batch))
            yield batch

    def __repr__(self) -> str:
        state = "closed" if self._loader is None else f"{len(self)} batches"
        return f"PreparedLoader(batch_size={self.batch_size}, {state}, device={self._device})"


def endless(loader: PreparedLoader) -> Iterator[Any]:
    """Batches epoch after epoch, for loops that stop on their own (a trial's window, a
    stretch of training time).

    Raises:
        DataError: an epoch gave no batch (the dataset is smaller than one batch).
    """
    while True:
        got_batch = False
        for batch in loader:
            got_batch = True
            yield batch
        if not got_batch:
            raise DataError("an epoch gave no batch: the dataset is smaller than one batch")


class StepObserver:
    """Told about each step by a ``Run``; the tuner's meter is one. The base does nothing."""

    def fetch_start(self) -> None:
        """The loop asks the loader for a batch."""

    def fetch_end(self, samples: int) -> None:
        """The batch arrived."""

    def step_end(self, loss: torch.Tensor | None, batch_size: int) -> None:
        """``run.step()`` was called: one micro-batch is done."""


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for an empty model."""
    for param in model.parameters():
        return param.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")
