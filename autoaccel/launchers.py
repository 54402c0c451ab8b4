"""Your launch, read: an Accelerate config file (``accelerate launch --config_file``) or a
DeepSpeed config (``ds_config.json``) as autoaccel's knobs.

``autoaccel tune train.py --launch-config FILE`` measures your setup as you launch it, not
as ``python train.py`` runs it: what the file sets is your baseline, and every pick is
measured against it. It reads what ``autoaccel export --to accelerate|deepspeed`` writes,
so a tuned config goes out to those tools and comes back:

- Accelerate: ``num_processes`` (``distributed_type`` NO: one; FSDP: the fsdp strategy;
  DEEPSPEED: its ``deepspeed_config``), ``mixed_precision``, ``use_cpu``,
  ``dynamo_config``'s backend (inductor: compile), and the threads per process
  ``accelerate launch`` gives when not told;
- DeepSpeed: ``train_micro_batch_size_per_gpu``, ``gradient_accumulation_steps``, the
  processes ``train_batch_size`` makes of them, ``bf16`` / ``fp16``, and ZeRO stage 3 as
  FSDP (stage 0 as DDP). A value of ``"auto"`` (Hugging Face fills it in) stays yours.

What a file leaves out stays as your script sets it. A setting autoaccel cannot measure as
yours (several machines, fp8, ZeRO stage 1 or 2, a compile backend other than inductor) is
refused in one line, before any trial.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from autoaccel.config import TrainingConfig
from autoaccel.errors import ConfigError, UsageError

__all__ = ["Launch", "deepspeed_pins", "read_launch"]

_ACCELERATE_PRECISIONS = {"no": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}
_ACCELERATE_KEYS = {"compute_environment", "distributed_type", "num_processes", "mixed_precision"}
_DEEPSPEED_KEYS = {
    "train_batch_size",
    "train_micro_batch_size_per_gpu",
    "gradient_accumulation_steps",
    "zero_optimization",
    "bf16",
    "fp16",
}
_DDP_KINDS = {"MULTI_GPU", "MULTI_CPU", "MULTI_XPU", "MULTI_NPU", "MULTI_MLU", "MULTI_HPU"}


@dataclass(frozen=True)
class Launch:
    """The knobs a launch file sets (``TrainingConfig`` field names), and where from."""

    path: Path
    tool: str  # "Accelerate" | "DeepSpeed"
    knobs: dict[str, Any] = field(default_factory=dict)

    def words(self) -> str:
        """What the launch sets, for a progress line: ``2 processes, bf16-mixed``."""
        parts = []
        if "processes" in self.knobs:
            n = self.knobs["processes"]
            parts.append(f"{n} process{'es' if n > 1 else ''}")
        if self.knobs.get("strategy") == "fsdp":
            parts.append("FSDP")
        if "batch_size" in self.knobs:
            parts.append(f"batch {self.knobs['batch_size']} per process")
        if "grad_accum_steps" in self.knobs:
            parts.append(f"accumulation {self.knobs['grad_accum_steps']}")
        if "num_threads" in self.knobs:
            n = self.knobs["num_threads"]
            parts.append(f"{n} thread{'s' if n > 1 else ''} per process")
        if "precision" in self.knobs:
            parts.append(self.knobs["precision"])
        if "compile" in self.knobs:
            parts.append("compiled" if self.knobs["compile"] else "not compiled")
        if "device" in self.knobs:
            parts.append(f"on the {self.knobs['device'].upper()}")
        return ", ".join(parts) or "nothing autoaccel tunes"

    def applied_to(self, user: TrainingConfig) -> TrainingConfig:
        """Your script's own settings with the launch's on top: your setup as you launch it.

        Raises:
            UsageError: the result is no config that could run (named with the file).
        """
        knobs = {**user.knobs(), **self.knobs}
        if "strategy" not in self.knobs and "processes" in self.knobs:
            knobs["strategy"] = "ddp" if knobs["processes"] > 1 else "none"
        try:
            return TrainingConfig.from_dict(knobs, source=str(self.path))
        except ConfigError as error:
            raise UsageError(f"{self.path}: {error}") from None


def read_launch(path: str | Path) -> Launch:
    """The knobs an Accelerate or DeepSpeed config sets.

    Raises:
        UsageError: no such file, not YAML/JSON, neither tool's config, or a setting
            autoaccel cannot measure as yours; one line that names the file and the fix.
    """
    path = Path(path)
    data = _load(path)
    if _ACCELERATE_KEYS & data.keys():
        return Launch(path, "Accelerate", _accelerate(data, path))
    if _DEEPSPEED_KEYS & data.keys():
        return Launch(path, "DeepSpeed", _deepspeed(data, path))
    raise UsageError(
        f"{path} is neither an Accelerate config (`accelerate config` writes one) nor a "
        "DeepSpeed config (ds_config.json): pass the file you launch your training with"
    )


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as error:
        raise UsageError(
            f"cannot read the launch config {path}: {error.strerror or error}; pass the "
            "file you give accelerate launch --config_file or deepspeed --deepspeed_config"
        ) from None
    try:
        data = yaml.safe_load(text)  # YAML reads JSON too
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(
            f"{path} is not YAML or JSON{where}: fix it or pass another file"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} holds no settings (a mapping of names to values)")
    return data


def _accelerate(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Accelerate's ``ClusterConfig`` settings as knobs."""
    knobs: dict[str, Any] = {}
    machines = data.get("num_machines", 1)
    if machines not in (None, 1):
        raise UsageError(
            f"{path} launches on {machines} machines; autoaccel measures one machine's "
            "training: tune with a config of one machine (num_machines: 1)"
        )
    kind = _named(data.get("distributed_type", "NO"))
    processes = _whole(data.get("num_processes", 1), "num_processes", path)
    if kind == "NO":
        knobs |= {"processes": 1, "strategy": "none"}
    elif kind in _DDP_KINDS:
        knobs |= {"processes": processes, "strategy": "ddp" if processes > 1 else "none"}
    elif kind == "FSDP":
        knobs |= {"processes": processes, "strategy": "fsdp"}
    elif kind == "DEEPSPEED":
        knobs["processes"] = processes
        knobs |= _accelerate_deepspeed(data.get("deepspeed_config") or {}, path, processes)
    else:
        raise UsageError(
            f"{path}: distributed_type {kind} is not one autoaccel trains (NO, MULTI_GPU, "
            "MULTI_CPU, FSDP or DEEPSPEED)"
        )
    precision = data.get("mixed_precision")
    if precision is not None:
        spelled = _named(precision).lower()
        if spelled not in _ACCELERATE_PRECISIONS:
            raise UsageError(
                f"{path}: mixed_precision {precision!r} is not one autoaccel tunes: use bf16, "
                "fp16 or no"
            )
        knobs["precision"] = _ACCELERATE_PRECISIONS[spelled]
    if data.get("use_cpu") is True:
        knobs["device"] = "cpu"
    knobs["num_threads"] = _accelerate_threads(knobs["processes"], data.get("use_cpu") is True)
    dynamo = data.get("dynamo_config")
    if isinstance(dynamo, dict) and "dynamo_backend" in dynamo:
        backend = _named(dynamo["dynamo_backend"])
        if backend not in ("NO", "INDUCTOR"):
            raise UsageError(
                f"{path}: dynamo_backend {backend} is not one autoaccel measures (its compile "
                "is torch.compile's inductor): use INDUCTOR or NO"
            )
        knobs["compile"] = backend == "INDUCTOR"
    return knobs


def _accelerate_threads(processes: int, cpu: bool) -> int:
    """The threads per process ``accelerate launch`` gives without
    ``--num_cpu_threads_per_process`` (which no config file holds): ``OMP_NUM_THREADS``;
    else, on the CPU, the physical cores shared among the processes (when more than one
    each); else 1."""
    told = os.environ.get("OMP_NUM_THREADS", "")
    if told.isdigit() and int(told) > 0:
        return int(told)
    share = (psutil.cpu_count(logical=False) or 1) // processes if cpu else 1
    return share if share > 1 else 1


def _accelerate_deepspeed(ds: dict[str, Any], path: Path, processes: int) -> dict[str, Any]:
    """An Accelerate config's ``deepspeed_config``: its own settings, or the DeepSpeed
    file it names (relative to the Accelerate config's folder)."""
    named = ds.get("deepspeed_config_file")
    if named:
        inner = Path(named) if Path(named).is_absolute() else path.parent / named
        knobs = _deepspeed(_load(inner), inner)
        knobs.pop("processes", None)  # the Accelerate config says how many
        sharded = knobs.get("strategy") == "fsdp"
        return knobs | {"strategy": "fsdp" if sharded else _zero(0, path, processes)}
    knobs = {"strategy": _zero(ds.get("zero_stage", 0), path, processes)}
    steps = ds.get("gradient_accumulation_steps")
    if steps is not None and steps != "auto":
        knobs["grad_accum_steps"] = _whole(steps, "gradient_accumulation_steps", path)
    return knobs


def _deepspeed(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """A DeepSpeed config's settings as knobs (``"auto"``: yours)."""
    knobs: dict[str, Any] = {}
    micro = _given(data, "train_micro_batch_size_per_gpu", path)
    accumulation = _given(data, "gradient_accumulation_steps", path)
    total = _given(data, "train_batch_size", path)
    if micro is not None:
        knobs["batch_size"] = micro
    if accumulation is not None:
        knobs["grad_accum_steps"] = accumulation
    if total is not None and micro is not None:
        per_process = micro * (accumulation or 1)
        if total % per_process:
            raise UsageError(
                f"{path}: train_batch_size {total} is not a whole number of processes' "
                f"{per_process} (micro-batch {micro} x accumulation {accumulation or 1}), as "
                "DeepSpeed requires: fix one of them"
            )
        knobs["processes"] = total // per_process
    for name, precision in (("bf16", "bf16-mixed"), ("fp16", "16-mixed")):
        enabled = (data.get(name) or {}).get("enabled")
        if enabled is True:
            knobs["precision"] = precision
    if "precision" not in knobs and all(
        (data.get(name) or {}).get("enabled") is False for name in ("bf16", "fp16")
    ):
        knobs["precision"] = "32-true"
    zero = (data.get("zero_optimization") or {}).get("stage", 0)
    strategy = _zero(zero, path, knobs.get("processes", 1))
    if strategy == "fsdp" or "processes" in knobs:
        knobs["strategy"] = strategy
    return knobs


def deepspeed_pins(data: Mapping[str, Any]) -> dict[str, str]:
    """The knobs a DeepSpeed config sets itself (a value other than ``"auto"``), each with
    the settings that set it: given to Hugging Face's ``TrainingArguments(deepspeed=...)``,
    they are yours, as HF refuses arguments that differ from them ("DeepSpeed config values
    that mismatch TrainingArguments values"), and DeepSpeed's own ``optimizer`` and
    ``scheduler`` sections set the LR and its schedule where HF's would.

    Example:
        >>> deepspeed_pins({"train_micro_batch_size_per_gpu": 16, "bf16": {"enabled": "auto"},
        ...                 "optimizer": {"type": "AdamW", "params": {"lr": 3e-5}}})
        {'batch_size': 'train_micro_batch_size_per_gpu 16', 'lr': 'optimizer.params.lr 3e-05'}
    """
    pins: dict[str, list[str]] = {}

    def pin(knobs: tuple[str, ...], key: str, value: Any) -> None:
        if value is not None and value != "auto":
            for knob in knobs:
                pins.setdefault(knob, []).append(f"{key} {value}")

    pin(
        ("batch_size",),
        "train_micro_batch_size_per_gpu",
        data.get("train_micro_batch_size_per_gpu"),
    )
    pin(
        ("grad_accum_steps",),
        "gradient_accumulation_steps",
        data.get("gradient_accumulation_steps"),
    )
    # DeepSpeed checks micro-batch x accumulation x processes against it
    pin(
        ("batch_size", "grad_accum_steps", "processes"),
        "train_batch_size",
        data.get("train_batch_size"),
    )
    for name in ("bf16", "fp16"):
        pin(("precision",), f"{name}.enabled", (data.get(name) or {}).get("enabled"))
    optimizer = (data.get("optimizer") or {}).get("params") or {}
    pin(("lr",), "optimizer.params.lr", optimizer.get("lr"))
    pin(("momentum",), "optimizer.params.betas", optimizer.get("betas"))
    scheduler = data.get("scheduler")
    if scheduler:
        kind = scheduler.get("type", "of its own") if isinstance(scheduler, Mapping) else ""
        pin(("schedule", "warmup_steps"), "scheduler", kind)
        params = (scheduler.get("params") or {}) if isinstance(scheduler, Mapping) else {}
        pin(("lr",), "scheduler.params.warmup_max_lr", params.get("warmup_max_lr"))
    return {knob: ", ".join(settings) for knob, settings in pins.items()}


def _zero(stage: Any, path: Path, processes: int) -> str:
    """ZeRO's stage as autoaccel's strategy: 3 shards as FSDP does; 0 is plain DDP."""
    if stage == 3:
        return "fsdp"
    if stage in (0, None):
        return "ddp" if processes > 1 else "none"
    raise UsageError(
        f"{path}: ZeRO stage {stage} has no counterpart autoaccel trains (stage 0 is DDP, "
        "stage 3 is FSDP's full sharding): tune with stage 0 or 3"
    )


def _named(value: Any) -> str:
    """An Accelerate choice as written; YAML reads an unquoted NO as false."""
    return "NO" if value is False else str(value).upper()


def _given(data: dict[str, Any], name: str, path: Path) -> int | None:
    value = data.get(name)
    return None if value is None or value == "auto" else _whole(value, name, path)


def _whole(value: Any, name: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{path}: {name} must be a whole number of at least 1, not {value!r}")
    return value
