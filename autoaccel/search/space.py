"""The search space: only the knobs that apply here, with bounds, and the memory model.

``build_space`` reads the hardware profile, the workload and the baseline measurement and
returns a ``SearchSpace``: a list of knobs with their candidate values (each with the reason
it is searched) and the knobs left out (each with the reason why). Batch sizes are bounded by
``MemoryModel``, a regression of measured peak memory on batch size that predicts the largest
batch under the memory budget before it is tried.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
import psutil
import torch

from autoaccel.config import TrainingConfig
from autoaccel.probe import HardwareProfile
from autoaccel.runtime.device import optimizer_impls
from autoaccel.search.sharding import ModelState

__all__ = ["Knob", "MemoryModel", "SearchSpace", "WorkloadFacts", "build_space", "powers_of_two"]

MEMORY_HEADROOM = 0.85  # use at most this share of the memory budget


@dataclass(frozen=True)
class WorkloadFacts:
    """What the search space and the advice need to know about a workload (from the
    baseline trial's report, or the caller's objects in-process)."""

    model_name: str
    parameter_count: int
    dataset_size: int | None  # None when the script batches by itself
    conv_model: bool
    tensor_data: bool
    device: torch.device
    start_s: float  # fixed cost of starting one trial (a subprocess costs seconds)
    optimizer: str = ""  # the optimizer's class name: it picks the LR scaling rule
    has_loader: bool = True  # False when the script batches by itself (no loader knobs)
    # Knobs the script pins (a Lightning Trainer's explicit arguments), with why: not searched.
    fixed: Mapping[str, str] = field(default_factory=dict)
    # Samples your script's own training takes (a Trainer's epochs or max_steps over its
    # data), when it says: time-to-loss's horizon is that training, where it is shorter.
    own_samples: int | None = None
    # The script steps a scheduler it made but did not give prepare(): that sets the LR.
    unpassed_scheduler: bool = False
    # Your optimizer's LR: each trial trains with it (the loss curves the guard reads), so
    # a rerun with another LR is another study.
    optimizer_lr: float | None = None


def _line_fit(points: list[tuple[int, int]]) -> tuple[float, float]:
    """Least squares ``y = base + slope * x`` with ``slope >= 0``: memory never shrinks
    with the batch. With one feature the constrained optimum is the plain fit, or, when its
    slope is negative, the flat line at the mean (what scikit-learn's
    ``LinearRegression(positive=True)`` gives, without its 160 MB and 3 s import).

    Example:
        >>> _line_fit([(10, 100), (20, 150)])
        (50.0, 5.0)
        >>> _line_fit([(10, 150), (20, 100)])
        (125.0, 0.0)
    """
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0
    if slope < 0:
        return mean_y, 0.0
    return mean_y - slope * mean_x, slope


@dataclass
class MemoryModel:
    """Peak memory as a linear function of batch size, fitted on measured trials.

    With one measurement the model assumes memory grows in proportion to the batch (an
    upper bound, since part of the memory does not grow); with two or more distinct batch
    sizes it fits ``peak = base + per_sample * batch`` by least squares, the slope kept
    non-negative (``_line_fit``).
    A batch size that ran out of memory caps every larger one.

    Example:
        >>> model = MemoryModel(budget_bytes=1000)
        >>> model.observe(10, 100); model.observe(20, 150)
        >>> model.max_batch_size()
        160
    """

    budget_bytes: int
    points: list[tuple[int, int]] = field(default_factory=list)
    smallest_oom: int | None = None

    def observe(self, batch_size: int, peak_bytes: int | None) -> None:
        """Record one trial's peak memory."""
        if peak_bytes:
            self.points.append((batch_size, peak_bytes))

    def observe_oom(self, batch_size: int) -> None:
        """Record that ``batch_size`` ran out of memory."""
        if self.smallest_oom is None or batch_size < self.smallest_oom:
            self.smallest_oom = batch_size

    def _coefficients(self) -> tuple[float, float] | None:
        if not self.points:
            return None
        sizes = {b for b, _ in self.points}
        if len(sizes) == 1:
            b, peak = max(self.points)
            return 0.0, peak / b
        return _line_fit(self.points)

    def predict(self, batch_size: int) -> float | None:
        """Predicted peak bytes at ``batch_size``; None before any measurement."""
        coefficients = self._coefficients()
        if coefficients is None:
            return None
        base, per_sample = coefficients
        return base + per_sample * batch_size

    def fits(self, batch_size: int) -> bool:
        """Whether ``batch_size`` is predicted to stay under the budget."""
        if self.smallest_oom is not None and batch_size >= self.smallest_oom:
            return False
        predicted = self.predict(batch_size)
        return predicted is None or predicted <= self.budget_bytes * MEMORY_HEADROOM

    def max_batch_size(self) -> int | None:
        """The largest batch predicted to fit; None while nothing bounds it."""
        coefficients = self._coefficients()
        limit = None if self.smallest_oom is None else self.smallest_oom - 1
        if coefficients is not None and coefficients[1] > 0:
            base, per_sample = coefficients
            predicted = int((self.budget_bytes * MEMORY_HEADROOM - base) / per_sample)
            limit = predicted if limit is None else min(limit, predicted)
        return limit


@dataclass(frozen=True)
class Knob:
    """One searched knob: its candidate values and why it is searched."""

    name: str
    choices: tuple[Any, ...]
    reason: str


# Set by ``config_for`` for each trial from its searched values, whatever yours are.
_SET_PER_TRIAL = ("strategy", "persistent_workers", "prefetch_factor")


@dataclass
class SearchSpace:
    """The knobs searched here, the ones left out (with why), and the memory model."""

    knobs: tuple[Knob, ...]
    excluded: dict[str, str]
    base: TrainingConfig  # values of every knob not searched
    memory: MemoryModel
    keep_global_batch: bool = False
    cores: int = 1  # usable CPU cores, shared by the processes of a DDP candidate
    model_state: ModelState | None = None  # whether a whole copy fits: DDP, else FSDP
    memory_device: str = "cpu"  # the device the memory model fits (``device`` searched)

    def counts_memory(self, config: TrainingConfig) -> bool:
        """Whether a trial of ``config`` ran on the device whose memory the model fits."""
        return config.device.split(":")[0] == self.memory_device.split(":")[0]

    def knob(self, name: str) -> Knob:
        """The knob called ``name``."""
        for k in self.knobs:
            if k.name == name:
                return k
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.knobs)

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """Optuna distributions, named as the config's fields."""
        return {k.name: optuna.distributions.CategoricalDistribution(k.choices) for k in self.knobs}

    def grid_size(self) -> int:
        """How many configurations an exhaustive grid over this space holds."""
        return math.prod(len(k.choices) for k in self.knobs)

    def grid(self) -> list[dict[str, Any]]:
        """Every configuration of the space, as parameter dicts."""
        combos: list[dict[str, Any]] = [{}]
        for k in self.knobs:
            combos = [{**c, k.name: v} for c in combos for v in k.choices]
        return combos

    def params_of(self, config: TrainingConfig) -> dict[str, Any]:
        """The config's values of the searched knobs."""
        return {k.name: getattr(config, k.name) for k in self.knobs}

    def normal(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` as they run: with several processes on the CPU, each process gets at
        most its share of the cores in intra-op threads (2 processes x 2 threads on 2 cores
        would only fight), so two spellings of one config are measured once.

        Example:
            >>> space = SearchSpace((), {}, TrainingConfig(), MemoryModel(1), cores=2)
            >>> space.normal({"processes": 2, "num_threads": 2})
            {'processes': 2, 'num_threads': 1}
        """
        processes = params.get("processes", self.base.processes)
        threads = params.get("num_threads")
        if processes > 1 and threads is not None:
            share = max(1, self.cores // processes)
            return {**params, "num_threads": min(threads, share)}
        return params

    def config_for(self, params: dict[str, Any]) -> TrainingConfig:
        """A full config from searched values, with the knobs that depend on them set."""
        params = self.normal(params)
        processes = params.get("processes", self.base.processes)
        config = replace(self.base, **params, strategy=self.strategy_for(processes))
        if processes > 1 and config.device.startswith("cuda"):
            config = replace(config, device="cuda")  # one GPU per process
        workers = config.num_workers
        return replace(
            config,
            persistent_workers=workers > 0,  # trials and epochs reuse workers
            prefetch_factor=(config.prefetch_factor or 2) if workers > 0 else None,
            grad_accum_steps=self._accum_for(config.batch_size, config.processes),
        )

    def strategy_for(self, processes: int) -> str:
        """How ``processes`` processes train: one alone; DDP when a whole copy of the
        model's state fits each, FSDP when it does not (``model_state``)."""
        if self.model_state is not None:
            return self.model_state.strategy_for(processes)
        return "ddp" if processes > 1 else "none"

    def identity(self) -> tuple[Any, ...]:
        """What makes two spaces the same search: the knobs, what is left out and why,
        the strategy of each process count, and the values every trial takes from your
        setup (a compile or an LR of yours that is not searched: trials measured without it
        are another setup's); not the memory figures of the moment.

        Example:
            >>> a = SearchSpace((), {}, TrainingConfig(compile=True), MemoryModel(1))
            >>> a.identity() == replace(a, base=TrainingConfig()).identity()
            False
        """
        counts = self.knob("processes").choices if "processes" in self.names else (1,)
        fixed = {
            name: value
            for name, value in self.base.knobs().items()
            if name not in self.names and name not in _SET_PER_TRIAL
        }
        strategies = tuple(self.strategy_for(n) for n in counts)
        return (self.knobs, self.excluded, strategies, tuple(sorted(fixed.items())))

    def _accum_for(self, batch_size: int, processes: int = 1) -> int:
        """Accumulation that keeps the caller's global batch (batch x accumulation x
        processes) when asked to; else none."""
        global_batch = self.base.global_batch
        per_step = batch_size * processes
        if self.keep_global_batch and per_step <= global_batch:
            return max(1, global_batch // per_step)
        return 1

    def describe(self) -> list[tuple[str, str, str]]:
        """Rows of (knob, values, why) for reports."""
        rows = [(k.name, ", ".join(map(str, k.choices)), k.reason) for k in self.knobs]
        rows += [(name, "not searched", why) for name, why in self.excluded.items()]
        if self.model_state is not None:
            searched = "processes" in self.names
            rows.append(("strategy", "follows processes", self.model_state.advice(searched)))
        return rows


def powers_of_two(low: int, high: int) -> list[int]:
    values, b = [], 1
    while b <= high:
        if b >= low:
            values.append(b)
        b *= 2
    return values


def _spread(limit: int) -> list[int]:
    """0..limit on a small machine; 0, 1, 2, 4, ... limit on a large one."""
    if limit <= 4:
        return list(range(limit + 1))
    return sorted({0, 1, *powers_of_two(2, limit), limit})


def memory_budget(profile: HardwareProfile, device: torch.device) -> int:
    """Bytes a trial may add: the GPU's whole memory, or the RAM available now on CPU.

    On CPU the model is fitted on each trial's growth over the memory already in use, so
    the budget is what is still free; on CUDA, peaks count everything the trial allocated.
    """
    if device.type == "cuda":
        index = device.index if device.index is not None else 0
        # NVML's view of that GPU (matched to torch's index, or in NVML's order)
        gpus = [g for g in profile.gpus if g.torch_index == index] or profile.gpus[index:]
        if gpus and gpus[0].memory_total_bytes:
            return int(gpus[0].memory_total_bytes)
        return int(torch.cuda.get_device_properties(index).total_memory)
    return int(psutil.virtual_memory().available)


def build_space(
    profile: HardwareProfile,
    user: TrainingConfig,
    *,
    dataset_size: int | None,
    device: torch.device,
    conv_model: bool,
    tensor_data: bool,
    baseline_memory_bytes: int | None,
    keep_global_batch: bool = False,
    include_compile: bool = False,
    include_parallel: bool = False,
    has_loader: bool = True,
    max_batch_size: int | None = None,
    model_state: ModelState | None = None,
    optimizer: str = "",
    device_reason: str = "",
    fixed: Mapping[str, str] | None = None,
) -> SearchSpace:
    """The knobs worth searching for this workload on this machine.

    Args:
        profile: The probed machine.
        user: The caller's current setup; its values stay in every knob's choices.
        dataset_size: Samples in the dataset (a batch never exceeds half of it), or None.
        device: Where the model trains.
        conv_model: The model has conv layers (channels_last applies).
        tensor_data: The data is in-memory tensors (batch_fetch applies).
        baseline_memory_bytes: What the baseline added to memory, to seed the memory model.
        keep_global_batch: Keep batch_size x grad_accum_steps as the caller has it.
        include_compile: Search torch.compile too (its compile time costs each trial).
        include_parallel: Search DDP over several processes (script trials only).
        has_loader: The data comes through a DataLoader (False for scripts that batch by
            themselves: no loader knobs then).
        max_batch_size: An upper bound the caller sets.
        model_state: The model's training state and the device it would fill
            (``autoaccel.search.sharding``): several processes run DDP when a whole copy
            fits each, FSDP when it does not.
        optimizer: The optimizer's class name: its fused and foreach implementations are
            searched on a GPU where torch has them.
        device_reason: Why the trials train on ``device`` (``autoaccel.runtime.device``).
            When that is not where ``user`` has the model (a GPU for a model left on the
            CPU), ``device`` is searched: the GPU first, your model's device kept.
        fixed: Knobs the script pins, with why: left out of the search at ``user``'s value.
    """
    cuda = device.type == "cuda"
    there = _device_knob(device)
    why = f"{device}: {device_reason}" if device_reason else str(device)
    found: dict[str, Knob | str] = {"device": why}
    if user.device not in ("auto", there):  # "auto": no device of its own to keep
        why = f"{why}; your model's device ({user.device}) is measured too"
        found["device"] = Knob("device", (there, user.device), why)
    else:
        user = replace(user, device=there)
    memory = MemoryModel(memory_budget(profile, device))
    memory.observe(user.batch_size, baseline_memory_bytes)
    found |= {  # a knob searched here, or why it is not
        "batch_size": _batch_sizes(user, dataset_size, keep_global_batch, max_batch_size),
        "num_threads": _threads(profile, user) if not cuda else _GPU_THREADS,
        "num_workers": _workers(profile, user) if has_loader else _NO_LOADER,
        **_precisions(profile, user, cuda),
        "channels_last": _CHANNELS_LAST if conv_model else "the model has no conv layers",
        "batch_fetch": _BATCH_FETCH if tensor_data else "only for in-memory tensor data",
        "pin_memory": _PIN_MEMORY if cuda and has_loader else _NO_GPU,
        "cudnn_benchmark": _cudnn(cuda, conv_model),
        "optimizer_impl": _optimizer_impl(optimizer) if cuda else _NO_GPU,
        "compile": _compile(profile, include_compile),
        "processes": _processes(profile, user, cuda, include_parallel),
    }
    found |= {name: why for name, why in (fixed or {}).items() if name in found}
    knobs = tuple(k for k in found.values() if isinstance(k, Knob))
    excluded = {name: why for name, why in found.items() if isinstance(why, str)}
    cores = profile.cpu.usable_cores
    return SearchSpace(
        knobs, excluded, user, memory, keep_global_batch, cores, model_state, memory_device=there
    )


_GPU_THREADS = "the GPU does the compute; CPU threads stay as they are"
_NO_GPU = "no GPU here"
_NO_LOADER = "the script batches by itself, without a DataLoader"
_CHANNELS_LAST = Knob("channels_last", (False, True), "the model has conv layers")
_BATCH_FETCH = Knob(
    "batch_fetch", (False, True), "in-memory tensors can be gathered a batch at a time"
)
_PIN_MEMORY = Knob("pin_memory", (False, True), "page-locked copies to the GPU")


def _batch_sizes(
    user: TrainingConfig,
    dataset_size: int | None,
    keep_global_batch: bool,
    max_batch_size: int | None,
) -> Knob:
    """Powers of two around the caller's batch, up to half the data (or the kept global
    batch, whose micro-batches they then are)."""
    global_batch = user.batch_size * user.grad_accum_steps
    if keep_global_batch:
        upper = global_batch
        reason = f"micro-batches of the kept global batch {global_batch}"
    else:
        # A batch never exceeds half the data; a script that batches by itself has no
        # dataset size, so 64x its own batch bounds the search there.
        upper = max(user.batch_size, dataset_size // 2 if dataset_size else user.batch_size * 64)
        reason = "larger batches use the hardware better, up to the memory model's bound"
    if max_batch_size is not None:
        upper = min(upper, max_batch_size)
    low = max(1, min(user.batch_size, 8) if keep_global_batch else user.batch_size // 4, 1)
    sizes = sorted({*powers_of_two(low, min(upper, 8192)), user.batch_size})
    if keep_global_batch:
        sizes = [b for b in sizes if global_batch % b == 0]
    return Knob("batch_size", tuple(sizes), reason)


def _threads(profile: HardwareProfile, user: TrainingConfig) -> Knob:
    cores = profile.cpu.usable_cores
    threads = sorted({*_spread(cores)} - {0} | ({user.num_threads} if user.num_threads else set()))
    reason = f"intra-op threads compete with loader workers for {cores} cores"
    return Knob("num_threads", tuple(threads), reason)


def _workers(profile: HardwareProfile, user: TrainingConfig) -> Knob:
    limit = profile.cpu.usable_cores
    workers = sorted({*_spread(limit), user.num_workers})
    return Knob(
        "num_workers", tuple(workers), f"loader workers, bounded by the {limit} usable cores"
    )


def _precisions(
    profile: HardwareProfile, user: TrainingConfig, cuda: bool
) -> dict[str, Knob | str]:
    """The precisions this machine runs (TF32 only on CUDA), and why the others are out."""
    on = "cuda" if cuda else "cpu"
    precisions = list(profile.supported_precisions(on))
    if user.precision not in precisions:
        precisions.insert(0, user.precision)
    found: dict[str, Knob | str] = {
        f"precision {p.precision}": p.reason for p in profile.precisions_on(on) if not p.supported
    }
    found["precision"] = Knob("precision", tuple(precisions), "the precisions this machine can run")
    return found


def _processes(
    profile: HardwareProfile, user: TrainingConfig, cuda: bool, include_parallel: bool
) -> Knob | str:
    """DDP over several processes (launched by torchrun): one per GPU on a GPU machine, up
    to the usable cores on the CPU (the intra-op threads then split between them)."""
    if not include_parallel:
        return (
            "several processes need script trials (torchrun): use `autoaccel tune train.py` for DDP"
        )
    if cuda:
        limit, unit = len(profile.gpus), "visible GPUs"
    else:
        limit, unit = profile.cpu.usable_cores, "usable cores, threads split between them"
    if limit < 2:
        return f"one process: this machine has {limit} {unit.split(',')[0]}"
    counts = sorted({*powers_of_two(1, limit), limit, user.processes})
    return Knob("processes", tuple(counts), f"DDP processes (torchrun), up to the {limit} {unit}")


def _device_knob(device: torch.device) -> str:
    """The config's ``device`` for trials on ``device``: plain ``cuda`` for the first GPU,
    so that under torchrun each process takes its own (``autoaccel.runtime.device``).

    Example:
        >>> _device_knob(torch.device("cuda", 0)), _device_knob(torch.device("cuda", 1))
        ('cuda', 'cuda:1')
    """
    if device.type == "cuda" and device.index in (None, 0):
        return "cuda"
    return str(device)


def _cudnn(cuda: bool, conv_model: bool) -> Knob | str:
    if not cuda:
        return _NO_GPU
    if not conv_model:
        return "the model has no conv layers for cuDNN to time"
    return Knob("cudnn_benchmark", (False, True), "cuDNN's fastest convolution for these shapes")


def _optimizer_impl(optimizer: str) -> Knob | str:
    """torch's foreach and fused implementations of the optimizer, where it has them."""
    kind = getattr(torch.optim, optimizer, None) if optimizer else None
    impls = optimizer_impls(kind) if isinstance(kind, type) else ("default",)
    if len(impls) < 2:
        return f"torch has no fused or foreach {optimizer or 'implementation of this optimizer'}"
    return Knob("optimizer_impl", impls, f"{optimizer}'s multi-tensor and fused kernels")


def _compile(profile: HardwareProfile, include_compile: bool) -> Knob | str:
    if not profile.software.compile_available:
        return f"not available here: {profile.software.compile_reason}"
    if include_compile:
        return Knob("compile", (False, True), "torch.compile, compile time counted")
    return (
        "compiling costs tens of seconds per trial; pass "
        "include_compile=True with a budget of 10 minutes or more"
    )
