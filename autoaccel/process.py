"""Process-wide settings a config changes (intra-op threads, cuDNN autotuning, float32
matmul precision), and the state a tuner must give back (those settings and the RNGs), in
one place.

- ``apply_process_settings(config)``: set them for a training run (``prepare()`` does, for
  the rest of the script: that is its purpose).
- ``applied_settings(config)``: the same for a ``with`` block, restored afterwards (trials).
- ``preserved_process_state(rng=True)``: snapshot and restore, whatever happens inside
  (``advise()`` leaves the caller's threads, matmul precision and RNG states as they were).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from autoaccel.config import TrainingConfig
from autoaccel.states import Precision

__all__ = ["applied_settings", "apply_process_settings", "preserved_process_state"]


@dataclass(frozen=True)
class _Snapshot:
    threads: int
    matmul: str
    cudnn_benchmark: bool
    rng: tuple[Any, ...] | None  # torch, CUDA, Python, NumPy; None when not kept

    @classmethod
    def take(cls, *, rng: bool) -> _Snapshot:
        states = None
        if rng:
            cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
            states = (torch.get_rng_state(), cuda, random.getstate(), np.random.get_state())
        return cls(
            torch.get_num_threads(),
            torch.get_float32_matmul_precision(),
            torch.backends.cudnn.benchmark,
            states,
        )

    def restore(self) -> None:
        torch.set_num_threads(self.threads)
        torch.set_float32_matmul_precision(self.matmul)
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        if self.rng is not None:
            torch_rng, cuda_rng, py_rng, np_rng = self.rng
            torch.set_rng_state(torch_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
            random.setstate(py_rng)
            np.random.set_state(np_rng)


def apply_process_settings(config: TrainingConfig) -> None:
    """Set the config's intra-op threads, cuDNN's autotuner and (for tf32) the float32
    matmul precision (TF32 for cuDNN's convolutions is torch's default already)."""
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    torch.backends.cudnn.benchmark = config.cudnn_benchmark
    if config.precision == Precision.TF32:
        torch.set_float32_matmul_precision("high")


@contextlib.contextmanager
def preserved_process_state(*, rng: bool = False) -> Iterator[None]:
    """Restore threads and matmul precision (and with ``rng`` the torch, CUDA, Python and
    NumPy RNG states) when the block ends, whatever happens inside.

    Example:
        >>> threads = torch.get_num_threads()
        >>> with preserved_process_state():
        ...     torch.set_num_threads(1)
        >>> torch.get_num_threads() == threads
        True
    """
    snapshot = _Snapshot.take(rng=rng)
    try:
        yield
    finally:
        snapshot.restore()


@contextlib.contextmanager
def applied_settings(config: TrainingConfig) -> Iterator[None]:
    """The config's process-wide settings for the duration of a ``with`` block."""
    with preserved_process_state():
        apply_process_settings(config)
        yield
