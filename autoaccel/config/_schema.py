"""``TrainingConfig``: the knobs autoaccel tunes and their validation.

One name per knob everywhere: the dataclass field is the YAML key, the Optuna parameter
name and the CLI override key. Every field carries its documentation in its metadata, which
writes the comment beside each key in ``autoaccel.yaml`` and the table in
``docs/config.md`` (a test keeps that file in step: regenerate it with
``python -m autoaccel.reference > docs/config.md``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autoaccel.config._render import render_yaml
from autoaccel.errors import ConfigError
from autoaccel.states import PRECISIONS

if TYPE_CHECKING:  # the probe imports torch: the config module must not
    from autoaccel.probe import HardwareProfile

__all__ = [
    "DEVICE_SPELLINGS",
    "LR_SCALING",
    "OPTIMIZER_IMPLS",
    "SCHEDULES",
    "SCHEMA_VERSION",
    "STRATEGIES",
    "Provenance",
    "TrainingConfig",
    "check_device_spelling",
]

#: The newest config format this autoaccel reads and the one it writes.
SCHEMA_VERSION = 1

STRATEGIES = ("none", "ddp", "fsdp")
WORKERS_PER_CORE = 4  # loader workers beyond this only wait for a core
#: How much of a bad value a message quotes: enough to recognise it, never a whole file.
QUOTE_CHARS = 60
LR_SCALING = ("none", "linear", "sqrt")
OPTIMIZER_IMPLS = ("default", "foreach", "fused")
DEVICE_SPELLINGS = "auto, cpu, cuda or cuda:N"
SCHEDULES = ("constant", "cosine", "linear", "one-cycle")


def knob(
    default: Any,
    doc: str,
    *,
    kind: type | tuple[type, ...],
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
    optional: bool = False,
    factory: Any = None,
    pattern: tuple[str, str] | None = None,
) -> Any:
    """A config field with the facts validation and documentation need (``pattern``: a
    regular expression the whole value matches, and its spellings in words)."""
    defaults = {"default_factory": factory} if factory else {"default": default}
    return field(
        **defaults,
        metadata={
            "doc": doc,
            "kind": kind,
            "minimum": minimum,
            "maximum": maximum,
            "choices": choices,
            "optional": optional,
            "pattern": pattern,
        },
    )


@dataclass(frozen=True)
class Provenance:
    """Where a config came from: the machine, the versions, the figures, the command."""

    hardware_fingerprint: str | None = knob(
        None, "hash of the hardware this was measured on", kind=str, optional=True
    )
    hardware: str | None = knob(
        None, "the hardware this was measured on, in words", kind=str, optional=True
    )
    machine: dict[str, Any] = knob(
        None, "the hardware facts behind the fingerprint", kind=dict, factory=dict
    )
    created_at: str | None = knob(
        None, "when this file was written (UTC, ISO 8601)", kind=str, optional=True
    )
    command: str | None = knob(None, "the command that produced this file", kind=str, optional=True)
    script: str | None = knob(
        None, "the training script this was tuned for (its file name)", kind=str, optional=True
    )
    model: str | None = knob(
        None,
        "the model it was tuned for: a hash of its parameter names and shapes",
        kind=str,
        optional=True,
    )
    versions: dict[str, str] = knob(None, "library versions when measured", kind=dict, factory=dict)
    measured: dict[str, float] = knob(
        None, "figures measured for this config", kind=dict, factory=dict
    )
    evidence: dict[str, str] = knob(
        None, "per knob, the measurement that chose its value", kind=dict, factory=dict
    )


@dataclass(frozen=True)
class TrainingConfig:
    """The training setup autoaccel tunes; every field is one knob.

    ``None`` in an optional field means "keep what the user's script does".

    Raises:
        ConfigError: listing every invalid field at once.

    Example:
        >>> config = TrainingConfig(batch_size=256, precision="bf16-mixed")
        >>> config.replace(num_workers=2).num_workers
        2
    """

    schema_version: int = knob(
        SCHEMA_VERSION,
        "config format version; newer files need a newer autoaccel",
        kind=int,
        minimum=1,
    )
    batch_size: int = knob(
        32, "samples per step in each process", kind=int, minimum=1, maximum=2**24
    )
    grad_accum_steps: int = knob(
        1,
        "micro-batches accumulated before each optimizer step",
        kind=int,
        minimum=1,
        maximum=4096,
    )
    num_workers: int = knob(
        0,
        "DataLoader worker processes (0 = load in the training process)",
        kind=int,
        minimum=0,
        maximum=512,
    )
    persistent_workers: bool = knob(
        False, "keep DataLoader workers alive between epochs (needs num_workers > 0)", kind=bool
    )
    prefetch_factor: int | None = knob(
        None,
        "batches each worker loads ahead (needs num_workers > 0; empty = torch's 2)",
        kind=int,
        minimum=1,
        maximum=64,
        optional=True,
    )
    device: str = knob(
        "auto",
        "where training runs: auto (a GPU when torch can use one and your code left the model "
        "on the CPU, else where the model is), cpu, cuda or cuda:N",
        kind=str,
        pattern=(r"auto|cpu|cuda(:[0-9]{1,3})?", DEVICE_SPELLINGS),
    )
    pin_memory: bool = knob(
        False,
        "page-locked host memory, so batches go to the GPU with non-blocking copies",
        kind=bool,
    )
    batch_fetch: bool = knob(
        False,
        "fetch a whole batch by one indexing call instead of collating sample by sample "
        "(in-memory tensor data only)",
        kind=bool,
    )
    num_threads: int | None = knob(
        None,
        "CPU threads for intra-op parallelism (empty = torch's default)",
        kind=int,
        minimum=1,
        maximum=4096,
        optional=True,
    )
    precision: str = knob(
        "32-true",
        "numeric precision: 32-true, tf32, bf16-mixed or 16-mixed",
        kind=str,
        choices=PRECISIONS,
    )
    channels_last: bool = knob(
        False, "channels-last memory layout for models with conv layers", kind=bool
    )
    compile: bool = knob(
        False, "torch.compile the model (its compile time counts against it)", kind=bool
    )
    cudnn_benchmark: bool = knob(
        False,
        "cuDNN times its convolution algorithms for the shapes seen and keeps the fastest "
        "(CUDA only; the first steps pay for it)",
        kind=bool,
    )
    optimizer_impl: str = knob(
        "default",
        "the optimizer's implementation: default (torch's choice), foreach (one kernel per "
        "operation over all parameters) or fused (one kernel per step), where torch has it",
        kind=str,
        choices=OPTIMIZER_IMPLS,
    )
    strategy: str = knob(
        "none",
        "parallelism: none, ddp or fsdp (FSDP2: parameters sharded; launched with torchrun)",
        kind=str,
        choices=STRATEGIES,
    )
    processes: int = knob(
        1,
        "training processes on this machine (torchrun --nproc-per-node)",
        kind=int,
        minimum=1,
        maximum=1024,
    )
    lr: float | None = knob(
        None,
        "peak learning rate (empty = the optimizer's own)",
        kind=(float, int),
        minimum=0.0,
        maximum=100.0,
        optional=True,
    )
    lr_scaling: str = knob(
        "none",
        "how lr follows a changed global batch: none, linear or sqrt",
        kind=str,
        choices=LR_SCALING,
    )
    momentum: float | None = knob(
        None,
        "SGD momentum or Adam-family beta1 (empty = the optimizer's own)",
        kind=(float, int),
        minimum=0.0,
        optional=True,
    )
    warmup_steps: int = knob(
        0,
        "optimizer steps of linear warm-up to the peak lr",
        kind=int,
        minimum=0,
        maximum=10**9,
    )
    schedule: str = knob(
        "constant",
        "lr after warm-up: constant (no schedule of autoaccel's: one of your script's runs), "
        "cosine, linear or one-cycle",
        kind=str,
        choices=SCHEDULES,
    )
    schedule_steps: int | None = knob(
        None,
        "optimizer steps the decay spans (needed by cosine, linear, one-cycle)",
        kind=int,
        minimum=1,
        maximum=10**9,
        optional=True,
    )
    provenance: Provenance = field(
        default_factory=Provenance,
        metadata={"doc": "where this config came from", "kind": Provenance},
    )

    def __post_init__(self) -> None:
        problems = _check_fields(self, "")
        problems += _check_relations(self)
        if problems:
            raise ConfigError(problems)

    def replace(self, **changes: Any) -> TrainingConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def knobs(self) -> dict[str, Any]:
        """The knob values by name (no schema version, no provenance)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("schema_version", "provenance")
        }

    @property
    def global_batch(self) -> int:
        """Samples per optimizer step over all processes."""
        return self.batch_size * self.grad_accum_steps * self.processes

    @property
    def scheduled(self) -> bool:
        """Whether the config holds an LR schedule of its own: a warm-up or a decay (else
        the LR is left as the script sets it)."""
        return self.schedule != "constant" or bool(self.warmup_steps)

    def to_dict(self) -> dict[str, Any]:
        """A plain copy, ready for YAML or JSON; the config is not changed."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The commented YAML text ``save_config`` writes."""
        return render_yaml(self)

    def check_for(self, profile: HardwareProfile) -> list[str]:
        """Problems running this config on ``profile``'s machine (empty when none)."""
        problems = []
        cores = profile.cpu.logical_cores
        if self.num_threads is not None and self.num_threads > cores:
            problems.append(
                f"num_threads: {self.num_threads} threads, but this machine has {cores} "
                f"cores; use at most {cores}"
            )
        if self.num_workers > WORKERS_PER_CORE * cores:
            problems.append(
                f"num_workers: {self.num_workers} workers on {cores} cores; use at most "
                f"{WORKERS_PER_CORE * cores}"
            )
        devices = len(profile.gpus) or profile.cpu.usable_cores
        if self.processes > devices:
            what = "GPUs" if profile.gpus else "usable CPU cores"
            problems.append(
                f"processes: {self.processes} processes, but this machine has {devices} "
                f"{what}; use at most {devices}"
            )
        count = profile.usable_gpus
        if self.device.startswith("cuda") and count == 0:
            problems.append(
                f"device: {self.device!r}, but torch can use no CUDA GPU here; "
                "set device: auto or cpu"
            )
        elif self.device.startswith("cuda:") and int(self.device.split(":")[1]) >= count:
            problems.append(
                f"device: {self.device!r}, but torch sees {count} GPU(s) here; "
                f"use cuda:0..cuda:{count - 1} or auto"
            )
        on = "cpu" if self.device == "cpu" else None
        if self.precision not in profile.supported_precisions(on):
            problems.append(
                f"precision: {self.precision!r} cannot run here "
                f"({profile.precision_reason(self.precision, on)}); use one of "
                f"{', '.join(profile.supported_precisions(on))}"
            )
        return problems

    def hardware_mismatch(self, profile: HardwareProfile) -> str | None:
        """A warning when this config was measured on other hardware, else ``None``."""
        recorded = self.provenance.hardware_fingerprint
        if recorded is None or recorded == profile.fingerprint():
            return None
        was = self.provenance.hardware or "unknown hardware"
        here = profile.facts()
        differs = [
            f"{key} {value} there, {here[key]} here"
            for key, value in self.provenance.machine.items()
            if key in here and str(here[key]) != str(value)
        ]
        what = "; ".join(differs) if differs else f"{was} there, {profile.describe()} here"
        return (
            f"this config was measured on other hardware ({what}; fingerprint {recorded}, "
            f"here {profile.fingerprint()}). Its figures may not hold here: run `autoaccel "
            "tune` again."
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> TrainingConfig:
        """Build a config from a mapping, reporting every problem in one ``ConfigError``."""
        problems = _check_mapping(cls, data, "")
        if problems:
            raise ConfigError(problems, source=source)
        recorded = data.get("provenance") or {}
        provenance = Provenance(
            **{k: ({} if v is None and k in _RECORDS else v) for k, v in recorded.items()}
        )
        knobs = {k: v for k, v in data.items() if k != "provenance"}
        try:
            return cls(**knobs, provenance=provenance)
        except ConfigError as error:
            raise ConfigError(error.problems, source=source) from None


_RECORDS = (
    "machine",
    "versions",
    "measured",
    "evidence",
)  # provenance's dicts; empty may be written ``:``


# --- validation --------------------------------------------------------------------------


def kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        dict: "a mapping",
    }
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def quote(value: Any) -> str:
    """``repr(value)``, cut to ``QUOTE_CHARS`` so a message never carries a whole file."""
    text = repr(value)
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 3] + "..."


def _check_value(name: str, value: Any, meta: Mapping[str, Any]) -> str | None:
    kind = meta["kind"]
    if value is None:
        if meta.get("optional") or kind is dict:
            return None
        return f"{name}: must be set, got an empty value"
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python, but `batch_size: true` is a mistake, not a 1.
    if isinstance(value, bool) and bool not in kinds:
        return f"{name}: expected {kind_name(kind)}, got {quote(value)}"
    if not isinstance(value, kinds):
        return f"{name}: expected {kind_name(kind)}, got {type(value).__name__} {quote(value)}"
    if kind is dict:
        return _check_record(name, value)
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name}: must be a finite number, got {value!r}"
    if meta.get("choices") and value not in meta["choices"]:
        return f"{name}: expected one of {', '.join(meta['choices'])}, got {quote(value)}"
    if meta.get("pattern") and not re.fullmatch(meta["pattern"][0], value):
        return f"{name}: expected {meta['pattern'][1]}, got {quote(value)}"
    minimum, maximum = meta.get("minimum"), meta.get("maximum")
    if minimum is not None and value < minimum:
        return f"{name}: must be >= {minimum}, got {quote(value)}"
    if maximum is not None and value > maximum:
        return f"{name}: must be <= {maximum:g}, got {quote(value)}"
    return None


def _check_record(name: str, record: Mapping[Any, Any]) -> str | None:
    """A provenance record: names to plain values (text, finite numbers, true/false)."""
    for key, value in record.items():
        if not isinstance(key, str):
            return f"{name}: keys must be names, got {quote(key)}"
        if not isinstance(value, (str, int, float)):
            return f"{_key_name(name + '.', key)}: expected a number or text, got {quote(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{_key_name(name + '.', key)}: must be a finite number, got {value!r}"
    return None


def _check_mapping(cls: type, data: Any, prefix: str) -> list[str]:
    """Every problem in a raw mapping meant for ``cls``, each with its key path."""
    where = prefix.rstrip(".") or "the config"
    if not isinstance(data, Mapping):
        return [
            f"{where}: expected a mapping of keys to values, got {type(data).__name__} "
            f"{quote(data)}"
        ]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [key for key in data if key not in fields]
    problems = []
    if unknown:
        named = ", ".join(_key_name(prefix, k) for k in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        problems.append(
            f"{named}{more}: unknown key{'s' if len(unknown) > 1 else ''}; "
            f"known keys{' under ' + where if prefix else ''} are {', '.join(fields)}"
        )
    version = data.get("schema_version") if cls is TrainingConfig else None
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        problems.append(
            f"schema_version: {quote(version)} is newer than this autoaccel understands "
            f"({SCHEMA_VERSION}); upgrade with `pip install -U autoaccel`"
        )
    for key, value in data.items():
        if key not in fields:
            continue
        meta = fields[key].metadata
        if meta["kind"] is Provenance:
            if value is not None:
                problems += _check_mapping(Provenance, value, f"{prefix}{key}.")
            continue
        problem = _check_value(f"{prefix}{key}", value, meta)
        if problem:
            problems.append(problem)
    return problems


def _key_name(prefix: str, key: Any) -> str:
    plain = isinstance(key, str) and key.isprintable() and len(key) <= QUOTE_CHARS // 2
    return f"{prefix}{key}" if plain else f"{prefix}{quote(key)}"


def _check_fields(obj: Any, prefix: str) -> list[str]:
    problems = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("kind") is Provenance:
            if not isinstance(value, Provenance):
                problems.append(f"{prefix}{f.name}: expected a Provenance, got {value!r}")
            continue
        problem = _check_value(f"{prefix}{f.name}", value, f.metadata)
        if problem:
            problems.append(problem)
    return problems


def check_device_spelling(value: str) -> str | None:
    """Why ``value`` is not a device a config can name, or None when it is.

    Example:
        >>> check_device_spelling("cuda:1") is None, check_device_spelling("gpu")
        (True, "device: expected auto, cpu, cuda or cuda:N, got 'gpu'")
    """
    meta = next(f.metadata for f in dataclasses.fields(TrainingConfig) if f.name == "device")
    return _check_value("device", value, meta)


def _check_relations(config: TrainingConfig) -> list[str]:
    problems = []
    if config.num_workers == 0 and config.persistent_workers:
        problems.append("persistent_workers: needs num_workers > 0; set it to false")
    if config.num_workers == 0 and config.prefetch_factor is not None:
        problems.append("prefetch_factor: needs num_workers > 0; leave it empty")
    if config.strategy == "none" and config.processes > 1:
        problems.append(
            f"processes: {config.processes} processes need strategy ddp or fsdp, got none"
        )
    if config.momentum is not None and config.momentum >= 1:
        problems.append(f"momentum: must be below 1, got {config.momentum!r}")
    if config.schedule != "constant" and config.schedule_steps is None:
        problems.append(f"schedule_steps: schedule {config.schedule!r} needs a step count")
    return problems
