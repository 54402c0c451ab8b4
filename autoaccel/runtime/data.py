"""The caller's data, and DataLoaders rebuilt from it with a config's loader settings.

Data may be a Dataset, a DataLoader (its dataset, collate_fn, sampler or shuffle and
drop_last are kept) or tensors ``(X, y)``. For in-memory tensors, ``batch_fetch`` gathers a
whole batch with one indexing call instead of collating sample by sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.distributed as dist
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
    "GlobalOrderSampler",
    "batch_samples",
    "build_loader",
    "describe_data",
    "loader_view",
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
    generator: torch.Generator | None = None  # the caller's shuffle RNG, kept for its order

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
            generator=data.generator or getattr(sampler, "generator", None),
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
        "generator",
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
        generator=kwargs.get("generator"),
    )


class _BatchIndexed(Dataset[tuple[torch.Tensor, ...]]):
    """Tensors indexed a whole batch at a time: one gather per tensor, no per-sample collate."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], source: Dataset[Any]) -> None:
        self.tensors = tensors
        self.source = source  # the caller's dataset, which run.loader.dataset shows

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
        generator: For the shuffle order (trials use a fixed seed); the caller's own by
            default.
        sampler: Overrides the sampler (under torchrun, a ``GlobalOrderSampler``).
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
    generator = generator or spec.generator
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
            _BatchIndexed(spec.tensors, spec.dataset),
            sampler=batches,
            batch_size=None,
            collate_fn=_identity,
            **common,
        )
    # The generator also seeds the workers, as in the caller's own DataLoader.
    kwargs: dict[str, Any] = {"generator": generator}
    if spec.collate_fn is not None:
        kwargs["collate_fn"] = spec.collate_fn
    if base_sampler is not None:
        kwargs["sampler"] = base_sampler
    else:
        kwargs["shuffle"] = spec.shuffle
    return DataLoader(
        spec.dataset, batch_size=config.batch_size, drop_last=spec.drop_last, **kwargs, **common
    )


class GlobalOrderSampler(Sampler[int]):
    """One process's share of the order a single process would train on, for DDP and FSDP.

    Each epoch (each ``iter()``) draws the order as ``RandomSampler`` draws it in a single
    process (a seed from the global RNG, or the caller's generator), takes rank 0's draw on
    every rank, and gives rank ``r`` every ``world``-th index from ``r``, as
    ``DistributedSampler`` splits its order. So ``world`` processes at ``batch_size`` each
    train, in optimizer step k, the samples one process trains on at ``world * batch_size``
    (with accumulation too): a pick that keeps your global batch keeps your training, step
    for step, on one epoch and on every epoch while nothing else draws from the RNG during
    training (dropout does; the order then stays fresh and shared, not yours). The order is
    new each epoch without ``set_epoch()``, which a script written for one process never
    calls; a script's ``set_epoch()`` is accepted and has nothing to do. Indices are padded
    (or, with ``drop_last``, trimmed) to a multiple of ``world`` as ``DistributedSampler``
    does.

    Args:
        dataset: The map-style dataset.
        world: How many processes share the order.
        rank: This process's place among them.
        shuffle: Draw a new order each epoch (else the dataset's order).
        drop_last: Trim the order to a multiple of ``world`` instead of padding it.
        generator: The caller's shuffle RNG; the global one when None.
        share: Hands rank 0's value to every rank; a broadcast over the process group by
            default (tests pass their own to run the ranks in one process).

    Example:
        >>> data = TensorDataset(torch.arange(8))
        >>> _ = torch.manual_seed(0)
        >>> alone = list(RandomSampler(data))  # one process's order
        >>> shares = []
        >>> for rank in (0, 1):
        ...     _ = torch.manual_seed(0)
        ...     shares.append(list(GlobalOrderSampler(data, world=2, rank=rank, shuffle=True,
        ...                                           share=lambda value: value)))
        >>> [sorted(shares[0][i:i + 2] + shares[1][i:i + 2]) for i in (0, 2)] == [
        ...     sorted(alone[0:4]), sorted(alone[4:8])]  # each step of 2 x 2 is 4 of one's
        True
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        *,
        world: int,
        rank: int,
        shuffle: bool,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        share: Callable[[Any], Any] | None = None,
    ) -> None:
        size = len(cast(Sized, dataset))
        self.dataset, self.world, self.rank = dataset, world, rank
        self.shuffle, self.drop_last, self.generator = shuffle, drop_last, generator
        self._share = share or _from_rank_0
        per_rank = size // world if drop_last else -(-size // world)
        self.num_samples = per_rank
        self._total = per_rank * world

    def __iter__(self) -> Iterator[int]:
        size = len(cast(Sized, self.dataset))
        order = (
            torch.randperm(size, generator=self._epoch_generator()).tolist()
            if self.shuffle
            else list(range(size))
        )
        while len(order) < self._total:  # pad as DistributedSampler does
            order += order[: self._total - len(order)]
        yield from order[self.rank : self._total : self.world]

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Accepted for scripts written for ``DistributedSampler``: each ``iter()`` already
        draws a new order, as a single process's ``RandomSampler`` does."""

    def _epoch_generator(self) -> torch.Generator:
        if self.generator is None:
            # RandomSampler's own draw, so the global RNG moves on as it does alone.
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            return torch.Generator().manual_seed(int(self._share(seed)))
        self.generator.set_state(self._share(self.generator.get_state()))
        return self.generator


def _from_rank_0(value: Any) -> Any:
    """Rank 0's ``value`` on every rank of the process group."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def loader_view(loader: DataLoader[Any]) -> tuple[Dataset[Any], int | None, Any, bool]:
    """(dataset, batch_size, sampler, drop_last) of a loader as the caller set them up.

    A ``batch_fetch`` loader batches by index (its sampler yields whole batches), so its
    own attributes describe that machinery; this gives the caller's view of it.
    """
    if isinstance(loader.dataset, _BatchIndexed) and isinstance(loader.sampler, BatchSampler):
        batches = loader.sampler
        return loader.dataset.source, batches.batch_size, batches.sampler, batches.drop_last
    return loader.dataset, loader.batch_size, loader.sampler, loader.drop_last


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
