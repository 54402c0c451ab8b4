"""DDP or FSDP: whether the model's training state fits one device.

DDP keeps a whole copy of the parameters, their gradients and the optimizer's state in
every process; FSDP (FSDP2's ``fully_shard``) keeps 1/N of them in each of N processes and
gathers a layer's parameters only while it computes. Activations are each process's own
either way. So a config with several processes runs DDP when a whole copy fits one
device, and FSDP when it does not.

The estimate, per process:

- parameters and gradients: 4 bytes each per parameter (fp32; autocast computes in
  lower precision but keeps fp32 weights and gradients);
- optimizer state: bytes per parameter by the optimizer's class (Adam's two moments are 8;
  SGD's momentum buffer is 4; an unknown optimizer is counted as Adam);
- activations: what the baseline trial measured the training step to add to memory, less
  the gradients and optimizer state it allocated in its first step.

A device is a GPU (its memory, one process each) or, on the CPU, the machine's free memory
(all processes share it, so each has its share).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HEADROOM", "ModelState", "estimate_state"]

HEADROOM = 0.85  # a process may fill at most this share of its device
PARAMETER_BYTES = 4  # fp32 weights
GRADIENT_BYTES = 4  # fp32 gradients
#: Optimizer state bytes per parameter, by class name (torch.optim's, fp32).
OPTIMIZER_BYTES = {
    "Adam": 8,
    "AdamW": 8,
    "NAdam": 8,
    "RAdam": 8,
    "Adamax": 8,
    "Adadelta": 8,
    "SparseAdam": 8,
    "Adagrad": 4,
    "RMSprop": 4,
    "SGD": 4,  # the momentum buffer (none without momentum: an upper bound then)
    "ASGD": 8,
    "Rprop": 8,
    "LBFGS": 8,
}
UNKNOWN_OPTIMIZER_BYTES = 8


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


@dataclass(frozen=True)
class ModelState:
    """The training state of one model and where it would live.

    Example:
        >>> state = ModelState(4 * 10**9, 4 * 10**9, 8 * 10**9, 10**9, "Adam", 12 * 2**30, False)
        >>> state.fits_one(), state.strategy_for(1), state.strategy_for(4)
        (False, 'none', 'fsdp')
        >>> state.per_process("fsdp", 4) == 4 * 10**9 + 10**9
        True
    """

    parameters: int  # bytes, in each of these
    gradients: int
    optimizer: int
    activations: int  # bytes one process adds at the measured batch
    optimizer_name: str
    capacity: int  # bytes of one device: a GPU's memory, or the machine's free memory
    shared: bool  # the processes share one memory (the CPU)

    @property
    def state(self) -> int:
        """Parameters, gradients and optimizer state together: what DDP copies."""
        return self.parameters + self.gradients + self.optimizer

    def per_process(self, strategy: str, processes: int) -> int:
        """Bytes one of ``processes`` processes holds with ``strategy``."""
        state = self.state / processes if strategy == "fsdp" else self.state
        return int(state) + self.activations

    def room(self, processes: int) -> float:
        """Bytes each of ``processes`` processes may fill."""
        return HEADROOM * self.capacity / (processes if self.shared else 1)

    def fits_one(self) -> bool:
        """Whether one process holds the whole state on one device."""
        return self.per_process("none", 1) <= self.room(1)

    def strategy_for(self, processes: int) -> str:
        """``none`` for one process, else DDP when a whole copy fits each process's
        room, FSDP when it does not."""
        if processes <= 1:
            return "none"
        return "ddp" if self.per_process("ddp", processes) <= self.room(processes) else "fsdp"

    def devices_needed(self) -> int:
        """The fewest processes (devices) over which FSDP fits, or 0 when none do (the
        activations alone overflow, or the memory is shared: CPU processes cannot add)."""
        for n in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024):
            if self.per_process("fsdp" if n > 1 else "none", n) <= self.room(n):
                return n
        return 0

    def line(self) -> str:
        """The estimate in one line."""
        device = "the machine's free memory" if self.shared else "one device"
        return (
            f"parameters {_gib(self.parameters)} + gradients {_gib(self.gradients)} + "
            f"{self.optimizer_name or 'optimizer'} state {_gib(self.optimizer)} + measured "
            f"activations {_gib(self.activations)} = {_gib(self.per_process('none', 1))} per "
            f"process; {device} holds {_gib(self.capacity)}"
        )

    def advice(self, searched_processes: bool) -> str:
        """What the estimate means for parallelism: a line for the space table."""
        if self.fits_one():
            return (
                f"DDP with several processes (a whole copy fits one process: {self.line()}); "
                "FSDP only where it would not"
            )
        needed = self.devices_needed()
        if searched_processes:
            return f"FSDP for several processes: the state does not fit one ({self.line()})"
        if needed == 0 or self.shared:
            return (
                f"the model's state does not fit this machine ({self.line()}): FSDP over "
                "several GPUs or nodes would hold 1/N of it each (docs/scale-out.md)"
            )
        return (
            f"advised: FSDP over at least {needed} GPUs (torchrun; docs/scale-out.md): "
            f"the state does not fit one ({self.line()})"
        )


def estimate_state(
    parameter_count: int,
    optimizer_name: str,
    measured_growth: int | None,
    capacity: int,
    *,
    shared: bool,
) -> ModelState:
    """The estimate from the baseline's facts.

    Args:
        parameter_count: The model's parameters.
        optimizer_name: The optimizer's class name.
        measured_growth: Bytes the baseline's training added to memory (None: unmeasured,
            counted as no activations).
        capacity: Bytes of one device (``memory_budget``).
        shared: The processes share one memory (CPU training).

    Example:
        >>> s = estimate_state(10**6, "SGD", 16 * 10**6, 2**30, shared=True)
        >>> s.parameters, s.gradients, s.optimizer, s.activations
        (4000000, 4000000, 4000000, 8000000)
    """
    per_parameter = OPTIMIZER_BYTES.get(optimizer_name, UNKNOWN_OPTIMIZER_BYTES)
    parameters = PARAMETER_BYTES * parameter_count
    gradients = GRADIENT_BYTES * parameter_count
    optimizer = per_parameter * parameter_count
    activations = max(0, (measured_growth or 0) - gradients - optimizer)
    return ModelState(
        parameters, gradients, optimizer, activations, optimizer_name, capacity, shared
    )
