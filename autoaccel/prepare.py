"""Applying a ``TrainingConfig`` to a model, an optimizer and data: the ``Run`` object.

``advise()`` builds a ``Run`` per trial on copies of the caller's model and optimizer;
``prepare()`` builds one for a normal run. Both go through the same code here:

- the DataLoader is rebuilt with the config's batch size, workers, prefetch and pinning,
  keeping the user's dataset, collate_fn, sampler or shuffle, and drop_last;
- in-memory tensor data can be fetched a whole batch per indexing call (``batch_fetch``);
- precision is ``torch.autocast`` (GradScaler for fp16; TF32 through matmul precision);
- ``channels_last`` applies to models with conv layers and to their 4-D inputs;
- ``torch.compile`` wraps the model (its compile time shows up as warm-up);
- process-wide settings (threads, matmul precision) are restored by ``applied_settings``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, replace
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    TensorDataset,
)

from autoaccel.config import TrainingConfig
from autoaccel.errors import DataError

__all__ = [
    "DataSpec",
    "Run",
    "applied_settings",
    "build_loader",
    "describe_data",
    "has_conv",
    "move_batch",
]

DEFAULT_BATCH_SIZE = 32  # when the caller gives a Dataset without a batch size


@dataclass(frozen=True)
class DataSpec:
    """The caller's data and the loader settings they chose, kept to rebuild loaders."""

    dataset: Dataset[Any]
    collate_fn: Callable[[list[Any]], Any] | None
    shuffle: bool
    sampler: Sampler[Any] | None  # the user's own sampler, kept as is
    drop_last: bool
    batch_size: int
    num_workers: int
    pin_memory: bool
    persistent_workers: bool
    prefetch_factor: int | None
    tensors: tuple[torch.Tensor, ...] | None  # in-memory tensor data: batch_fetch applies
    worker_init_fn: Callable[[int], None] | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def user_config(self) -> TrainingConfig:
        """The loader part of the caller's current setup, as a config."""
        return TrainingConfig(
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None,
        )


def describe_data(data: Any, *, loader_kwargs: Mapping[str, Any] | None = None) -> DataSpec:
    """Normalise a Dataset, a DataLoader or tensors ``(X, y)`` into a ``DataSpec``.

    Raises:
        DataError: the data is empty, of an unknown kind, or tensors of unequal length.

    Example:
        >>> spec = describe_data((torch.randn(10, 3), torch.zeros(10)))
        >>> (len(spec), spec.batch_size, spec.tensors is not None)
        (10, 32, True)
    """
    kwargs = dict(loader_kwargs or {})
    if isinstance(data, DataLoader):
        if data.batch_size is None:
            raise DataError(
                "the DataLoader has batch_size=None (it batches by itself), so autoaccel "
                "cannot change the batch size; pass the Dataset and loader_kwargs instead"
            )
        sampler = data.sampler
        shuffle = isinstance(sampler, RandomSampler)
        plain = isinstance(sampler, (RandomSampler, SequentialSampler))
        own_sampler = None if plain else cast(Sampler[Any], sampler)
        tensors = data.dataset.tensors if isinstance(data.dataset, TensorDataset) else None
        spec = DataSpec(
            dataset=data.dataset,
            collate_fn=data.collate_fn,
            shuffle=shuffle,
            sampler=own_sampler,
            drop_last=data.drop_last,
            batch_size=data.batch_size,
            num_workers=data.num_workers,
            pin_memory=data.pin_memory,
            persistent_workers=data.persistent_workers,
            prefetch_factor=data.prefetch_factor if data.num_workers > 0 else None,
            tensors=tensors,
            worker_init_fn=data.worker_init_fn,
        )
    elif (
        isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data)
    ):
        lengths = {len(t) for t in data}
        if len(lengths) != 1:
            shapes = ", ".join(str(tuple(t.shape)) for t in data)
            raise DataError(
                f"tensors given as data must have the same first dimension, got shapes {shapes}"
            )
        spec = _from_dataset(TensorDataset(*data), kwargs, tensors=tuple(data), shuffle=True)
    elif isinstance(data, Dataset):
        spec = _from_dataset(data, kwargs, tensors=None, shuffle=False)
    else:
        raise DataError(
            f"data must be a Dataset, a DataLoader or a tuple of tensors (X, y), "
            f"got {type(data).__name__}"
        )
    try:
        size = len(spec.dataset)  # type: ignore[arg-type]
    except TypeError:
        raise DataError(
            "the dataset has no len(); autoaccel needs a map-style Dataset to rebuild loaders"
        ) from None
    if size == 0:
        raise DataError("the dataset is empty: give data with at least one batch of samples")
    return spec


def _from_dataset(
    dataset: Dataset[Any],
    kwargs: dict[str, Any],
    *,
    tensors: tuple[torch.Tensor, ...] | None,
    shuffle: bool,
) -> DataSpec:
    known = {
        "batch_size",
        "shuffle",
        "sampler",
        "collate_fn",
        "drop_last",
        "num_workers",
        "pin_memory",
        "persistent_workers",
        "prefetch_factor",
        "worker_init_fn",
    }
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise DataError(
            f"loader_kwargs: unknown key(s) {', '.join(unknown)}; "
            f"known are {', '.join(sorted(known))}"
        )
    workers = int(kwargs.get("num_workers", 0))
    return DataSpec(
        dataset=dataset,
        collate_fn=kwargs.get("collate_fn"),
        shuffle=bool(kwargs.get("shuffle", shuffle)) and kwargs.get("sampler") is None,
        sampler=kwargs.get("sampler"),
        drop_last=bool(kwargs.get("drop_last", False)),
        batch_size=int(kwargs.get("batch_size", DEFAULT_BATCH_SIZE)),
        num_workers=workers,
        pin_memory=bool(kwargs.get("pin_memory", False)),
        persistent_workers=bool(kwargs.get("persistent_workers", False)),
        prefetch_factor=kwargs.get("prefetch_factor") if workers > 0 else None,
        tensors=tensors,
        worker_init_fn=kwargs.get("worker_init_fn"),
    )


class _BatchIndexed(Dataset[tuple[torch.Tensor, ...]]):
    """Tensors indexed a whole batch at a time: one gather per tensor, no per-sample collate."""

    def __init__(self, tensors: tuple[torch.Tensor, ...]) -> None:
        self.tensors = tensors

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices)
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return len(self.tensors[0])


def _identity(batch: Any) -> Any:
    return batch


def build_loader(
    spec: DataSpec,
    config: TrainingConfig,
    *,
    generator: torch.Generator | None = None,
    sampler: Sampler[Any] | None = None,
) -> DataLoader[Any]:
    """A DataLoader over the caller's data with the config's loader settings.

    Args:
        spec: The caller's data and settings.
        config: batch_size, num_workers, persistent_workers, prefetch_factor, pin_memory,
            batch_fetch are taken from here; the rest from ``spec``.
        generator: For the shuffle order (trials use a fixed seed).
        sampler: Overrides the sampler (DDP's DistributedSampler).
    """
    workers = config.num_workers
    common: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": config.pin_memory and torch.cuda.is_available(),
        "persistent_workers": config.persistent_workers and workers > 0,
        "worker_init_fn": spec.worker_init_fn,
    }
    if workers > 0:
        common["prefetch_factor"] = config.prefetch_factor or 2
    base_sampler = sampler or spec.sampler
    if config.batch_fetch and spec.tensors is not None:
        if base_sampler is None:
            base_sampler = (
                RandomSampler(cast(Sized, spec.dataset), generator=generator)
                if spec.shuffle
                else SequentialSampler(cast(Sized, spec.dataset))
            )
        batches = BatchSampler(base_sampler, config.batch_size, spec.drop_last)
        # batch_size=None turns off auto-collation: each index is a whole batch's indices.
        return DataLoader(
            _BatchIndexed(spec.tensors),
            sampler=batches,
            batch_size=None,
            collate_fn=_identity,
            **common,
        )
    kwargs: dict[str, Any] = {}
    if spec.collate_fn is not None:
        kwargs["collate_fn"] = spec.collate_fn
    if base_sampler is not None:
        kwargs["sampler"] = base_sampler
    else:
        kwargs["shuffle"] = spec.shuffle
        kwargs["generator"] = generator
    return DataLoader(
        spec.dataset, batch_size=config.batch_size, drop_last=spec.drop_last, **kwargs, **common
    )


def has_conv(model: nn.Module) -> bool:
    """Whether channels_last can matter: the model has 2-D convolutions."""
    return any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())


def move_batch(
    batch: Any, device: torch.device, *, channels_last: bool = False, non_blocking: bool = False
) -> Any:
    """Move every tensor in a batch to ``device``; 4-D float inputs go channels-last."""
    if isinstance(batch, torch.Tensor):
        if channels_last and batch.dim() == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        if batch.device != device:
            batch = batch.to(device, non_blocking=non_blocking)
        return batch
    if isinstance(batch, Mapping):
        return type(batch)(
            {
                k: move_batch(
                    v,
                    device,
                    channels_last=channels_last,  # type: ignore[call-arg]
                    non_blocking=non_blocking,
                )
                for k, v in batch.items()
            }
        )
    if isinstance(batch, (tuple, list)):
        moved = [
            move_batch(v, device, channels_last=channels_last, non_blocking=non_blocking)
            for v in batch
        ]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    return batch


def batch_samples(batch: Any) -> int:
    """How many samples a batch holds: the first dimension of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    if isinstance(batch, Sequence) and not isinstance(batch, str):
        for item in batch:
            n = batch_samples(item)
            if n:
                return n
    return 0


_AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


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
    ) -> None:
        self.config = config
        self.device = device or _model_device(model)
        if config.channels_last and has_conv(model):
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model: nn.Module = torch.compile(model) if config.compile else model  # type: ignore[assignment]
        self.optimizer = optimizer
        self.scheduler = scheduler
        self._loader = loader
        self.batch_size = config.batch_size
        self.grad_accum_steps = config.grad_accum_steps
        self._micro_step = 0
        self.optimizer_steps = 0
        self._channels_last = config.channels_last and has_conv(model)
        dtype = _AUTOCAST_DTYPES.get(config.precision)
        self._autocast_dtype = dtype
        self._scaler = (
            torch.amp.GradScaler(self.device.type)
            if config.precision == "16-mixed" and self.device.type == "cuda"
            else None
        )
        self.last_loss: torch.Tensor | None = None

    @property
    def loader(self) -> Iterator[Any]:
        """Batches on ``run.device`` in the chosen layout."""
        if self._loader is None:
            raise DataError(
                "this run was prepared without data, so it has no loader; "
                "pass data to prepare(model, optimizer, data) or batch by yourself"
            )
        non_blocking = self._loader.pin_memory
        for batch in self._loader:
            yield move_batch(
                batch, self.device, channels_last=self._channels_last, non_blocking=non_blocking
            )

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The chosen precision as a context manager (a no-op in 32-true and tf32)."""
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """Backward through ``loss``, scaled for fp16 and divided for accumulation."""
        self.last_loss = loss.detach()
        if self.grad_accum_steps > 1:
            loss = loss / self.grad_accum_steps
        if self._scaler is not None:
            self._scaler.scale(loss).backward()
        else:
            loss.backward()

    def step(self) -> bool:
        """End a micro-batch; steps the optimizer when enough have accumulated.

        Returns:
            True when the optimizer stepped.
        """
        self._micro_step += 1
        if self._micro_step % self.grad_accum_steps:
            return False
        if self._scaler is not None:
            self._scaler.step(self.optimizer)
            self._scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer_steps += 1
        return True


def _model_device(model: nn.Module) -> torch.device:
    for param in model.parameters():
        return param.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def with_user_settings(config: TrainingConfig, spec: DataSpec) -> TrainingConfig:
    """``config`` with the loader settings the caller chose."""
    user = spec.user_config()
    return replace(
        config,
        **{
            k: getattr(user, k)
            for k in (
                "batch_size",
                "num_workers",
                "pin_memory",
                "persistent_workers",
                "prefetch_factor",
            )
        },
    )
