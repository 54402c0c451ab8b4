"""Applying a ``TrainingConfig`` to a model and optimizer: the ``Run`` object.

``advise()`` builds a ``Run`` per trial on copies of the caller's model and optimizer;
``prepare()`` builds one for a normal run or a tuner's trial. Both go through this code:

- precision is ``torch.autocast`` (GradScaler for fp16 on CUDA; TF32 through matmul
  precision);
- ``channels_last`` applies to models with conv layers and to their 4-D inputs;
- ``torch.compile`` wraps the model (its compile time shows up as warm-up);
- ``backward``/``step`` handle gradient accumulation;
- process-wide settings (threads, matmul precision) are scoped by ``applied_settings``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from autoaccel.config import TrainingConfig
from autoaccel.data import batch_samples, move_batch
from autoaccel.errors import DataError

__all__ = ["Run", "StepObserver", "applied_settings", "has_conv", "model_device"]


def has_conv(model: nn.Module) -> bool:
    """Whether channels_last can matter: the model has 2-D convolutions."""
    return any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())


_AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
_NO_AUTOCAST = contextlib.nullcontext()  # reusable: one object for every step


@contextlib.contextmanager
def applied_settings(config: TrainingConfig) -> Iterator[None]:
    """Apply the config's process-wide settings for the duration of a ``with`` block.

    Threads and float32 matmul precision are restored afterwards, whatever happens.
    """
    threads = torch.get_num_threads()
    matmul = torch.get_float32_matmul_precision()
    try:
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        if config.precision == "tf32":
            torch.set_float32_matmul_precision("high")
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_float32_matmul_precision(matmul)


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
        if distributed:
            # DDP before compile, as torch recommends; gradients all-reduce across processes.
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.distributed = distributed
        self.model: nn.Module = torch.compile(model) if config.compile else model  # type: ignore[assignment]
        self.observer = observer
        self.optimizer = optimizer
        self.scheduler = scheduler
        self._loader = loader
        self.batch_size = config.batch_size
        self.grad_accum_steps = config.grad_accum_steps
        self._micro_step = 0
        self.optimizer_steps = 0
        dtype = _AUTOCAST_DTYPES.get(config.precision)
        self._autocast_dtype = dtype
        self._scaler = (
            torch.amp.GradScaler(self.device.type)
            if config.precision == "16-mixed" and self.device.type == "cuda"
            else None
        )
        self._last_loss: torch.Tensor | None = None

    @property
    def loader(self) -> Iterator[Any]:
        """Batches on ``run.device`` in the chosen layout."""
        if self._loader is None:
            raise DataError(
                "this run was prepared without data, so it has no loader; "
                "pass data to prepare(model, optimizer, data) or batch by yourself"
            )
        observer = self.observer
        if observer is None and self.device.type == "cpu" and not self._channels_last:
            # Nothing to move, convert or time: hand the batches over untouched.
            yield from self._loader
            return
        non_blocking = self._loader.pin_memory
        batches = iter(self._loader)
        while True:
            if observer is not None:
                observer.fetch_start()
            try:
                batch = next(batches)
            except StopIteration:
                return
            batch = move_batch(
                batch, self.device, channels_last=self._channels_last, non_blocking=non_blocking
            )
            if observer is not None:
                observer.fetch_end(batch_samples(batch))
            yield batch

    def close(self) -> None:
        """Let go of the loader, so its worker processes end now rather than at exit."""
        self._loader = None

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
        if self.distributed and not last_micro_step:
            with self.model.no_sync():  # type: ignore[operator]
                scaled.backward()  # gradients all-reduce only on the last micro-batch
        else:
            scaled.backward()

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
