"""The typed states that code compares: how a trial ended, what a search optimises, which
precision a step runs in.

Each is a ``str`` enum, so a value compares equal to its spelling, goes into JSON, YAML and
Optuna attributes as that spelling, and reads back with ``Outcome("oom")``; code compares
members (``m.outcome is Outcome.OOM``), so mypy catches a misspelt state.

Example:
    >>> Outcome("oom") is Outcome.OOM, Outcome.OK == "ok", str(Precision.BF16_MIXED)
    (True, True, 'bf16-mixed')
"""

from __future__ import annotations

from enum import Enum

__all__ = ["PRECISIONS", "Bound", "Objective", "Outcome", "Precision"]


class _Spelled(str, Enum):
    """A state whose value is its spelling in files, JSON and messages."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def spellings(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)


class Outcome(_Spelled):
    """How a trial ended. Only ``OK`` has a throughput worth comparing."""

    OK = "ok"
    OOM = "oom"  # the device or host ran out of memory
    DIVERGED = "diverged"  # the loss became NaN or infinite
    ERROR = "error"  # anything else the training code raised
    PRUNED = "pruned"  # stopped early as clearly slower than the best so far
    TIMEOUT = "timeout"  # ran past the trial's time limit (and was killed)


class Bound(_Spelled):
    """What limits a training setup, as the diagnosis reads its baseline."""

    INPUT = "input"  # waiting for data
    COMPUTE = "compute"  # the step itself
    MEMORY = "memory"  # near the memory budget


class Objective(_Spelled):
    """What "fastest" means for a search."""

    THROUGHPUT = "throughput"  # samples per second
    TIME_TO_LOSS = "time-to-loss"  # training seconds to the held-out losses (or a goal)


class Precision(_Spelled):
    """The numeric precision of the training step (Lightning's spellings)."""

    FP32 = "32-true"
    TF32 = "tf32"  # float32 storage, TF32 matmuls (CUDA, compute capability >= 8.0)
    BF16_MIXED = "bf16-mixed"  # autocast to bfloat16
    FP16_MIXED = "16-mixed"  # autocast to float16, with a GradScaler on CUDA


#: The precision spellings a config may name, in the order the docs list them.
PRECISIONS = Precision.spellings()
