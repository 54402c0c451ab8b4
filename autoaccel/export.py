"""A tuned config in other tools' own words: Lightning, Accelerate, DeepSpeed, torchrun and
environment variables (``autoaccel export``).

Each export holds the text that tool reads, plus the knobs it cannot express and what to
do about each one. A knob is never dropped silently. Nothing here imports torch or the
target libraries, so exporting costs no start-up time. The tests check each export with the
real library, where that library installs.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from autoaccel.config import TrainingConfig

__all__ = ["TARGETS", "Export", "export"]


@dataclass(frozen=True)
class Export:
    """One export: the files' texts by suggested name, and the knobs left to the user."""

    target: str
    files: dict[str, str]  # suggested file name -> its text
    not_expressed: dict[str, str] = field(default_factory=dict)  # knob -> what to do instead
    expressed: tuple[str, ...] = ()  # the knobs the files carry

    def text(self) -> str:
        """Everything, for a terminal: each file under a header, then the knobs left out."""
        parts = [f"# --- {name} ---\n{body.rstrip()}\n" for name, body in self.files.items()]
        if self.not_expressed:
            parts.append(f"# --- not expressible in {self.target}: set these yourself ---")
            parts += [f"# {knob}: {what}" for knob, what in self.not_expressed.items()]
        return "\n".join(parts) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "files": self.files,
            "expressed": list(self.expressed),
            "not_expressed": self.not_expressed,
        }


def _loader_knobs(config: TrainingConfig, where: str) -> dict[str, str]:
    """The DataLoader knobs, which no launcher or trainer config holds."""
    args = {
        "batch_size": config.batch_size,
        "num_workers": config.num_workers,
        "pin_memory": config.pin_memory,
    }
    if config.num_workers:
        args["persistent_workers"] = config.persistent_workers
        if config.prefetch_factor is not None:
            args["prefetch_factor"] = config.prefetch_factor
    call = ", ".join(f"{k}={v!r}" for k, v in args.items())
    knobs = {"batch_size": f"DataLoader({call}) {where}"}
    for name in ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor"):
        if name in args:
            knobs[name] = "in the DataLoader call above"
    if config.batch_fetch:
        knobs["batch_fetch"] = (
            "batch by slicing in-memory tensors (a BatchSampler over a TensorDataset with "
            "batch_size=None), not sample by sample"
        )
    return knobs


def _model_knobs(config: TrainingConfig) -> dict[str, str]:
    """The knobs that live in the training code: layout, threads, compile, the LR plan."""
    knobs: dict[str, str] = {}
    if config.channels_last:
        knobs["channels_last"] = (
            "model = model.to(memory_format=torch.channels_last), and the same for each input batch"
        )
    if config.num_threads is not None:
        knobs["num_threads"] = f"torch.set_num_threads({config.num_threads}) in each process"
    if config.precision == "tf32":
        knobs["precision"] = 'torch.set_float32_matmul_precision("high") (TF32 matmuls)'
    if config.cudnn_benchmark:
        knobs["cudnn_benchmark"] = "torch.backends.cudnn.benchmark = True before training"
    if config.optimizer_impl != "default":
        knobs["optimizer_impl"] = (
            f"construct your optimizer with {config.optimizer_impl}=True (torch's "
            f"{config.optimizer_impl} implementation)"
        )
    if config.lr is not None:
        knobs["lr"] = f"the optimizer's lr={config.lr:g} (peak, after warm-up)"
    if config.lr_scaling != "none":
        knobs["lr_scaling"] = (
            f"scale your lr by the {config.lr_scaling} rule for the global batch "
            f"{config.global_batch} against your own"
        )
    if config.momentum is not None:
        knobs["momentum"] = f"SGD momentum (or Adam beta1) = {config.momentum:g}"
    if config.warmup_steps or config.schedule != "constant":
        plan = f"{config.warmup_steps} steps of linear warm-up, then {config.schedule}" + (
            f" over {config.schedule_steps} steps" if config.schedule_steps else ""
        )
        knobs["schedule"] = f"an LR scheduler: {plan}"
        for name in ("warmup_steps", "schedule_steps"):
            knobs[name] = "in the LR scheduler above"
    return knobs


def _gpu_index(config: TrainingConfig) -> int | None:
    """N of a config's ``cuda:N`` (one process on that GPU), else None."""
    return int(config.device.split(":")[1]) if config.device.startswith("cuda:") else None


def _lightning(config: TrainingConfig) -> Export:
    accelerator = {"cpu": "cpu", "auto": "auto"}.get(config.device, "gpu")
    index = _gpu_index(config)
    devices: Any = config.processes if config.strategy == "ddp" else 1
    trainer: dict[str, Any] = {
        "accelerator": accelerator,
        "precision": "32-true" if config.precision == "tf32" else config.precision,
        "strategy": "ddp" if config.strategy == "ddp" else "auto",
        "devices": [index] if index is not None and devices == 1 else devices,
        "accumulate_grad_batches": config.grad_accum_steps,
    }
    python = (
        "trainer = lightning.Trainer(\n"
        + "".join(f"    {k}={v!r},\n" for k, v in trainer.items())
        + ")\n"
    )
    cli = yaml.safe_dump({"trainer": trainer}, sort_keys=False)
    knobs = {
        **_loader_knobs(config, "in your LightningDataModule's *_dataloader methods"),
        **_model_knobs(config),
    }
    if config.compile:
        knobs["compile"] = "model = torch.compile(model) before trainer.fit"
    carried: tuple[str, ...] = ("device", "strategy", "processes", "grad_accum_steps")
    if config.precision != "tf32":
        carried += ("precision",)
    return Export("lightning", {"trainer.py": python, "lightning-cli.yaml": cli}, knobs, carried)


def _accelerate(config: TrainingConfig) -> Export:
    many = config.strategy == "ddp" and config.processes > 1
    settings: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU" if many else "NO",
        "mixed_precision": {"bf16-mixed": "bf16", "16-mixed": "fp16"}.get(config.precision, "no"),
        "num_processes": config.processes if many else 1,
        "num_machines": 1,
        "machine_rank": 0,
        "gpu_ids": "all" if _gpu_index(config) is None else str(_gpu_index(config)),
        "main_training_function": "main",
        "downcast_bf16": "no",
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": config.device == "cpu",
    }
    if config.compile:
        settings["dynamo_config"] = {"dynamo_backend": "INDUCTOR"}
    knobs = {
        **_loader_knobs(config, "passed to accelerator.prepare()"),
        **_model_knobs(config),
    }
    if config.grad_accum_steps > 1:
        knobs["grad_accum_steps"] = (
            f"Accelerator(gradient_accumulation_steps={config.grad_accum_steps}) and "
            "`with accelerator.accumulate(model):` around each step"
        )
    if many:
        knobs["processes on a CPU-only machine"] = (
            "on a CPU-only machine use distributed_type: MULTI_CPU and use_cpu: true "
            f"(num_processes: {config.processes})"
        )
    carried: tuple[str, ...] = ("device", "strategy", "processes", "compile")
    if config.precision != "tf32":
        carried += ("precision",)
    files = {"accelerate-config.yaml": yaml.safe_dump(settings, sort_keys=False)}
    return Export("accelerate", files, knobs, carried)


def _deepspeed(config: TrainingConfig) -> Export:
    settings: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum_steps,
        "train_batch_size": config.global_batch,
        "bf16": {"enabled": config.precision == "bf16-mixed"},
        "fp16": {"enabled": config.precision == "16-mixed"},
        "zero_optimization": {"stage": 0},
    }
    loader = _loader_knobs(config, "(DeepSpeed batches only with its own training_data loader)")
    knobs = {"DataLoader": loader.pop("batch_size"), **loader, **_model_knobs(config)}
    knobs["train_batch_size"] = (
        f"train_micro_batch_size_per_gpu above; train_batch_size {config.global_batch} assumes "
        f"{config.processes} process(es): DeepSpeed checks it against the world size"
    )
    if config.lr is not None and (config.warmup_steps or config.schedule != "constant"):
        settings["scheduler"] = _deepspeed_scheduler(config)
        for name in ("schedule", "warmup_steps", "schedule_steps"):
            knobs.pop(name, None)
        knobs["lr"] = (
            f"the scheduler above ends warm-up at lr {config.lr:g}; give the optimizer the same lr"
        )
    if config.compile:
        knobs["compile"] = "engine.compile() after deepspeed.initialize"
    if config.device == "cpu":
        knobs["device"] = (
            "DeepSpeed picks its accelerator itself: for the CPU, DS_ACCELERATOR=cpu (its CPU "
            "build); each process otherwise trains on its LOCAL_RANK's GPU"
        )
    carried: tuple[str, ...] = ("batch_size", "grad_accum_steps", "processes", "strategy")
    if config.device != "cpu":
        carried += ("device",)
    if config.precision != "tf32":
        carried += ("precision",)
    if "scheduler" in settings:
        carried += ("warmup_steps", "schedule", "schedule_steps")
    files = {"ds_config.json": json.dumps(settings, indent=2) + "\n"}
    return Export("deepspeed", files, knobs, carried)


def _deepspeed_scheduler(config: TrainingConfig) -> dict[str, Any]:
    """DeepSpeed's own warm-up schedulers for the tuned LR plan."""
    assert config.lr is not None
    total = (config.schedule_steps or 0) + config.warmup_steps
    if config.schedule == "cosine":
        return {
            "type": "WarmupCosineLR",
            "params": {"total_num_steps": total, "warmup_num_steps": config.warmup_steps},
        }
    if config.schedule in ("linear", "one-cycle"):
        return {
            "type": "WarmupDecayLR",
            "params": {
                "total_num_steps": total,
                "warmup_min_lr": 0.0,
                "warmup_max_lr": config.lr,
                "warmup_num_steps": config.warmup_steps,
            },
        }
    return {
        "type": "WarmupLR",
        "params": {
            "warmup_min_lr": 0.0,
            "warmup_max_lr": config.lr,
            "warmup_num_steps": config.warmup_steps,
        },
    }


def _launch_env(config: TrainingConfig) -> dict[str, str]:
    threads = config.num_threads
    return {"OMP_NUM_THREADS": str(threads)} if threads is not None else {}


def _torchrun(config: TrainingConfig, script: str, config_path: str) -> Export:
    processes = config.processes if config.strategy != "none" else 1
    env = {"AUTOACCEL_CONFIG": config_path, **_launch_env(config)}
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    here = f"{prefix} torchrun --standalone --nproc-per-node={processes} {shlex.quote(script)}"
    nodes = (
        f"{prefix} torchrun --nnodes=2 --nproc-per-node={processes} --rdzv-backend=c10d "
        f"--rdzv-endpoint=HOST:29400 --rdzv-id=autoaccel {shlex.quote(script)}"
    )
    text = (
        "# one machine (what `autoaccel run` starts on the machine it was tuned for):\n"
        f"{here}\n"
        "# several machines: the same line on each, HOST being the first one's address\n"
        f"# (the config was tuned on one machine: tune again with the machines you use)\n"
        f"{nodes}\n"
    )
    knobs = {"the other knobs": "read from $AUTOACCEL_CONFIG by autoaccel.prepare() in the script"}
    return Export(
        "torchrun", {"torchrun.sh": text}, knobs, ("strategy", "processes", "num_threads")
    )


def _env(config: TrainingConfig, config_path: str) -> Export:
    env = {"AUTOACCEL_CONFIG": config_path, **_launch_env(config)}
    if config.num_threads is not None:
        env["MKL_NUM_THREADS"] = str(config.num_threads)
    text = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    knobs = {"the other knobs": "read from $AUTOACCEL_CONFIG by autoaccel.prepare() in the script"}
    return Export("env", {"autoaccel.env": text}, knobs, ("num_threads",))


#: The export targets, each with what it writes.
TARGETS: dict[str, str] = {
    "lightning": "Trainer arguments and a LightningCLI YAML fragment",
    "accelerate": "an `accelerate launch --config_file` YAML",
    "deepspeed": "a DeepSpeed JSON config (batch, accumulation, bf16/fp16, ZeRO, scheduler)",
    "torchrun": "the torchrun command lines, here and over several machines",
    "env": "environment variables for a job script",
}


def export(
    config: TrainingConfig,
    target: str,
    *,
    script: str = "train.py",
    config_path: str = "autoaccel.yaml",
) -> Export:
    """``config`` in ``target``'s words (one of ``TARGETS``).

    Args:
        script: The training script, for the command lines.
        config_path: Where the config lives, for ``$AUTOACCEL_CONFIG``.

    Raises:
        ValueError: an unknown target.

    Example:
        >>> out = export(TrainingConfig(batch_size=256, precision="bf16-mixed"), "deepspeed")
        >>> json.loads(out.files["ds_config.json"])["bf16"]
        {'enabled': True}
    """
    makers: dict[str, Callable[[], Export]] = {
        "lightning": lambda: _lightning(config),
        "accelerate": lambda: _accelerate(config),
        "deepspeed": lambda: _deepspeed(config),
        "torchrun": lambda: _torchrun(config, script, config_path),
        "env": lambda: _env(config, config_path),
    }
    if target not in makers:
        raise ValueError(f"unknown export target {target!r}; use one of {', '.join(TARGETS)}")
    return makers[target]()
