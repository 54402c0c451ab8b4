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
from pathlib import Path
from typing import Any

import yaml

from autoaccel.config import TrainingConfig
from autoaccel.errors import UsageError

__all__ = ["TARGETS", "Export", "export", "lightning_trainer_args"]


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
    if config.scheduled:
        knobs["schedule"] = f"an LR scheduler stepped once per optimizer step: {_plan(config)}"
        for name in ("warmup_steps", "schedule_steps"):
            knobs[name] = "in the LR scheduler above"
    return knobs


def _plan(config: TrainingConfig) -> str:
    """The LR plan in words, with the spans ``autoaccel.schedule.lr_factor`` uses."""
    warm = f"{config.warmup_steps} steps of linear warm-up" if config.warmup_steps else "no warm-up"
    total = config.schedule_steps or 0
    if config.schedule == "constant" or total <= config.warmup_steps:
        return f"{warm}, then constant"
    end = {
        "cosine": "cosine to 0",
        "linear": "linear to 0",
        "one-cycle": "cosine to 4% of the peak",
    }
    return f"{warm}, then {end[config.schedule]} by step {total} (steps counted from 0)"


def _schedule_code(config: TrainingConfig, calls_per_step: int = 1) -> str:
    """Python that builds the tuned LR schedule for an optimizer, exactly as
    ``autoaccel.prepare()`` does (``lr_scheduler(optimizer)``: a ``LambdaLR``), or "" when
    the LR stays constant. ``calls_per_step``: how often the target steps a scheduler per
    optimizer step (Accelerate's prepared scheduler: once per process)."""
    if not config.scheduled:
        return ""
    plan = TrainingConfig(
        warmup_steps=config.warmup_steps,
        schedule=config.schedule,
        schedule_steps=config.schedule_steps,
    )
    fields = ", ".join(
        f"{k}={getattr(plan, k)!r}" for k in ("warmup_steps", "schedule", "schedule_steps")
    )
    peak = (
        f"    for group in optimizer.param_groups:  # the tuned peak LR\n"
        f'        group["lr"] = group["initial_lr"] = {config.lr!r}\n'
        if config.lr is not None
        else ""
    )
    factor = "lr_factor(plan)"
    doc = "step it once per optimizer step"
    if calls_per_step > 1:
        factor = f"lambda call: lr_factor(plan)(call // {calls_per_step})"
        doc = f"Accelerate steps it {calls_per_step} times per optimizer step, once per process"
    return (
        "\n\n# The tuned LR plan: " + _plan(config) + ".\n"
        "# It is autoaccel's own schedule (pip install autoaccel), so each step's LR is the one\n"
        "# autoaccel.prepare() gives.\n"
        "from autoaccel.config import TrainingConfig  # noqa: E402\n"
        "from autoaccel.schedule import lr_factor  # noqa: E402\n\n\n"
        "def lr_scheduler(optimizer):\n"
        f'    """The tuned schedule on ``optimizer``; {doc}."""\n'
        + peak
        + f"    plan = TrainingConfig({fields})\n"
        f"    return torch.optim.lr_scheduler.LambdaLR(optimizer, {factor})\n"
    )


def _comment_block(lines: dict[str, str], target: str) -> str:
    """What the files cannot hold, as comments at the top of one of them."""
    if not lines:
        return ""
    head = f"# Not expressible in {target}: set these yourself (autoaccel export said so too)\n"
    return head + "".join(f"#   {knob}: {what}\n" for knob, what in lines.items()) + "\n"


def _gpu_index(config: TrainingConfig) -> int | None:
    """N of a config's ``cuda:N`` (one process on that GPU), else None."""
    return int(config.device.split(":")[1]) if config.device.startswith("cuda:") else None


def _processes(config: TrainingConfig) -> int:
    """The processes the config trains in (one without a DDP or FSDP strategy)."""
    return config.processes if config.strategy != "none" else 1


def _many(config: TrainingConfig) -> bool:
    """Whether the config trains in several processes (DDP or FSDP)."""
    return _processes(config) > 1


def _no_cpu_fsdp(config: TrainingConfig, target: str, why: str) -> None:
    """Refuse an FSDP config on the CPU for a target whose FSDP needs GPUs."""
    if config.strategy == "fsdp" and config.device == "cpu":
        raise UsageError(
            f"this config trains FSDP on the CPU, which {target} cannot ({why}); export "
            "--to torchrun (or env) runs it as tuned, or tune again with --strategy ddp"
        )


def _threads_line(config: TrainingConfig) -> str:
    if config.num_threads is None:
        return ""
    return (
        f"torch.set_num_threads({config.num_threads})  # the threads each process was measured "
        "with\n"
    )


def lightning_trainer_args(config: TrainingConfig) -> dict[str, Any]:
    """The ``lightning.Trainer`` arguments that carry ``config``: accelerator, precision
    (TF32 is a process setting there: "32-true"), strategy, devices, accumulation.

    Raises:
        UsageError: FSDP on the CPU, which Lightning's FSDP strategy cannot run.

    Example:
        >>> args = lightning_trainer_args(TrainingConfig(precision="bf16-mixed", processes=2,
        ...                                              strategy="ddp", device="cpu"))
        >>> args["precision"], args["strategy"], args["devices"]
        ('bf16-mixed', 'ddp', 2)
    """
    _no_cpu_fsdp(config, "Lightning", "its FSDP strategy requires a GPU accelerator")
    index = _gpu_index(config)
    devices: Any = _processes(config)
    return {
        "accelerator": {"cpu": "cpu", "auto": "auto"}.get(config.device, "gpu"),
        "precision": "32-true" if config.precision == "tf32" else config.precision,
        "strategy": config.strategy if config.strategy != "none" else "auto",
        "devices": [index] if index is not None and devices == 1 else devices,
        "accumulate_grad_batches": config.grad_accum_steps,
    }


def _lightning(config: TrainingConfig) -> Export:
    trainer = lightning_trainer_args(config)
    knobs = {
        **_loader_knobs(config, "in your LightningDataModule's *_dataloader methods"),
        **_model_knobs(config),
    }
    if config.compile:
        knobs["compile"] = "model = torch.compile(model) before trainer.fit"
    carried: tuple[str, ...] = ("device", "strategy", "processes", "grad_accum_steps")
    if config.precision != "tf32":
        carried += ("precision",)
    schedule = _schedule_code(config)
    carried += _take(knobs, "num_threads") if config.num_threads is not None else ()
    if schedule:
        carried += _take(knobs, "schedule", "warmup_steps", "schedule_steps", "lr")
        schedule += (
            "\n\n# In your LightningModule, step it once per optimizer step:\n"
            "#     def configure_optimizers(self):\n"
            "#         optimizer = ...  # yours\n"
            '#         step = {"scheduler": lr_scheduler(optimizer), "interval": "step"}\n'
            '#         return {"optimizer": optimizer, "lr_scheduler": step}\n'
        )
    python = (
        '"""Lightning Trainer arguments autoaccel tuned (autoaccel export --to lightning):\n'
        '``from trainer import trainer`` and ``trainer.fit(...)``."""\n\n'
        + _comment_block(knobs, "Lightning")
        + "import lightning\nimport torch\n\n"
        + _threads_line(config)
        + "\ntrainer = lightning.Trainer(\n"
        + "".join(f"    {k}={v!r},\n" for k, v in trainer.items())
        + ")\n"
        + schedule
    )
    cli = yaml.safe_dump({"trainer": trainer}, sort_keys=False)
    return Export("lightning", {"trainer.py": python, "lightning-cli.yaml": cli}, knobs, carried)


def _take(knobs: dict[str, str], *names: str) -> tuple[str, ...]:
    """Remove ``names`` from the knobs left to the user: the files carry them."""
    return tuple(name for name in names if knobs.pop(name, None) is not None)


def _accelerate_settings(config: TrainingConfig) -> dict[str, Any]:
    """The ``accelerate launch --config_file`` YAML's settings.

    Accelerate's MULTI_CPU starts one process unless MPI starts the others; its torchrun
    launcher is the one it calls MULTI_GPU, and ACCELERATE_USE_CPU=true (set by
    accelerate-launch.sh) makes those processes one gloo group on the CPU.
    """
    many, cpu = _many(config), config.device == "cpu"
    kind = ("FSDP" if config.strategy == "fsdp" else "MULTI_GPU") if many else "NO"
    settings: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": kind,
        "mixed_precision": {"bf16-mixed": "bf16", "16-mixed": "fp16"}.get(config.precision, "no"),
        "num_processes": _processes(config),
        "num_machines": 1,
        "machine_rank": 0,
        "main_training_function": "main",
        "downcast_bf16": "no",
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": cpu,
    }
    if not cpu:
        settings["gpu_ids"] = "all" if _gpu_index(config) is None else str(_gpu_index(config))
    if kind == "FSDP":
        settings["fsdp_config"] = {"fsdp_version": 2, "fsdp_reshard_after_forward": True}
    if config.compile:
        settings["dynamo_config"] = {"dynamo_backend": "INDUCTOR"}
    return settings


def _accelerate(config: TrainingConfig, script: str) -> Export:
    _no_cpu_fsdp(config, "Accelerate", "its FSDP plugin trains on GPUs")
    on_cpus = _many(config) and config.device == "cpu"  # several processes on the CPU
    knobs = {
        **_loader_knobs(config, "passed to accelerator.prepare()"),
        **_model_knobs(config),
    }
    carried: tuple[str, ...] = ("device", "strategy", "processes", "compile", "grad_accum_steps")
    if config.precision != "tf32":
        carried += ("precision",)
    launch = ["accelerate", "launch", "--config_file", '"$here/accelerate-config.yaml"']
    if config.num_threads is not None:  # accelerate launch pins 1 thread unless told
        launch += ["--num_cpu_threads_per_process", str(config.num_threads)]
        carried += _take(knobs, "num_threads")
    # Accelerate's prepared scheduler steps once per process per optimizer step.
    schedule = _schedule_code(config, calls_per_step=_processes(config))
    if schedule:
        carried += _take(knobs, "schedule", "warmup_steps", "schedule_steps", "lr")
    env = ""
    if config.grad_accum_steps > 1:  # Accelerator() reads it when not given the argument
        env = f"ACCELERATE_GRADIENT_ACCUMULATION_STEPS={config.grad_accum_steps} "
    env += "ACCELERATE_USE_CPU=true " if on_cpus else ""
    header = (
        "# Accelerate settings autoaccel tuned (autoaccel export --to accelerate); start the\n"
        "# training with accelerate-launch.sh beside this file, which adds what no config\n"
        "# file holds (threads per process, gradient accumulation"
        + (", the CPU for every process).\n# distributed_type MULTI_GPU is Accelerate's "
           "torchrun launcher; its MULTI_CPU\n# would start one process here (the others "
           "need MPI).\n" if on_cpus else ").\n")
    )  # fmt: skip
    command = " ".join([*launch, shlex.quote(script), '"$@"'])
    sh = (
        "#!/usr/bin/env bash\n"
        "# The tuned launch (autoaccel export --to accelerate). Your script makes one\n"
        "# Accelerator() (it reads the accumulation from this environment) and steps inside\n"
        "# `with accelerator.accumulate(model):`.\n"
        + _comment_block(knobs, "Accelerate")
        + "set -euo pipefail\n"
        'here=$(cd "$(dirname "$0")" && pwd)\n'
        f"{env}exec {command}\n"
    )
    files = {
        "accelerate-config.yaml": header
        + yaml.safe_dump(_accelerate_settings(config), sort_keys=False),
        "accelerate-launch.sh": sh,
    }
    if schedule:
        files["lr_schedule.py"] = (
            '"""The LR plan autoaccel tuned, for Accelerate (autoaccel export --to accelerate):\n'
            "``scheduler = accelerator.prepare(lr_scheduler(optimizer))`` and\n"
            '``scheduler.step()`` after each ``optimizer.step()``."""\n\nimport torch\n' + schedule
        )
    return Export("accelerate", files, knobs, carried)


def _deepspeed(config: TrainingConfig) -> Export:
    settings: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum_steps,
        "bf16": {"enabled": config.precision == "bf16-mixed"},
        "fp16": {"enabled": config.precision == "16-mixed"},
        # FSDP shards parameters, gradients and optimizer state: ZeRO stage 3 does the same
        "zero_optimization": {"stage": 3 if config.strategy == "fsdp" else 0},
    }
    loader = _loader_knobs(config, "(DeepSpeed batches only with its own training_data loader)")
    knobs = {"DataLoader": loader.pop("batch_size"), **loader, **_model_knobs(config)}
    carried: tuple[str, ...] = ("batch_size", "grad_accum_steps", "strategy")
    if config.compile:
        knobs["compile"] = "engine.compile() after deepspeed.initialize"
    if config.device == "cpu":
        knobs["device"] = (
            "DeepSpeed picks its accelerator itself: for the CPU, DS_ACCELERATOR=cpu (its CPU "
            "build); each process otherwise trains on its LOCAL_RANK's GPU"
        )
    else:
        carried += ("device",)
    if config.precision != "tf32":
        carried += ("precision",)
    knobs["processes"] = (
        f"launch {_processes(config)} process(es): deepspeed "
        f"--num_gpus {_processes(config)} (or torchrun); DeepSpeed "
        "derives the global batch from the world size"
    )
    schedule = _schedule_code(config)
    carried += _take(knobs, "num_threads") if config.num_threads is not None else ()
    if schedule:
        carried += _take(knobs, "schedule", "warmup_steps", "schedule_steps", "lr")
    python = (
        '"""deepspeed.initialize with the config autoaccel tuned (autoaccel export --to\n'
        "deepspeed): ``from deepspeed_init import initialize`` and ``engine, optimizer, _,\n"
        'scheduler = initialize(model, optimizer)``; DeepSpeed steps the schedule."""\n\n'
        + _comment_block(knobs, "DeepSpeed")
        + "from pathlib import Path\n\nimport deepspeed\nimport torch\n\n"
        + _threads_line(config)
        + schedule
        + "\n\ndef initialize(model, optimizer, **kwargs):\n"
        '    """deepspeed.initialize with ds_config.json beside this file'
        + (' and the LR plan above."""\n' if schedule else '."""\n')
        + '    config = str(Path(__file__).with_name("ds_config.json"))\n'
        + "    return deepspeed.initialize(\n"
        "        model=model, optimizer=optimizer, config=config, "
        + ("lr_scheduler=lr_scheduler, " if schedule else "")
        + "**kwargs\n    )\n"
    )
    files = {
        "ds_config.json": json.dumps(settings, indent=2) + "\n",
        "deepspeed_init.py": python,
    }
    return Export("deepspeed", files, knobs, carried)


def _launch_env(config: TrainingConfig) -> dict[str, str]:
    threads = config.num_threads
    return {"OMP_NUM_THREADS": str(threads)} if threads is not None else {}


def _torchrun(config: TrainingConfig, script: str, config_path: str) -> Export:
    processes = _processes(config)
    env = {"AUTOACCEL_CONFIG": config_path, **_launch_env(config)}
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    here = (
        f"{prefix} exec torchrun --standalone --nproc-per-node={processes} "
        f'{shlex.quote(script)} "$@"'
    )
    nodes = (
        f"{prefix} torchrun --nnodes=2 --nproc-per-node={processes} --rdzv-backend=c10d "
        f'--rdzv-endpoint=HOST:29400 --rdzv-id=autoaccel {shlex.quote(script)} "$@"'
    )
    text = (
        "#!/usr/bin/env bash\n"
        "# The tuned launch (autoaccel export --to torchrun): one machine, as `autoaccel run`\n"
        "# starts it.\n"
        "set -euo pipefail\n"
        f"{here}\n"
        "\n"
        "# Several machines instead: run this line on each (HOST: the first one's address).\n"
        "# The config was tuned on one machine: tune again with the machines you use.\n"
        f"# {nodes}\n"
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
    "lightning": "a Trainer (trainer.py, with the LR schedule) and a LightningCLI YAML fragment",
    "accelerate": "an Accelerate config YAML and the `accelerate launch` script that uses it",
    "deepspeed": "a DeepSpeed JSON config and deepspeed_init.py (initialize, LR schedule)",
    "torchrun": "torchrun.sh: the launch on this machine (several machines: commented)",
    "env": "environment variables for a job script",
}


def export(
    config: TrainingConfig,
    target: str,
    *,
    script: str | None = None,
    config_path: str = "autoaccel.yaml",
) -> Export:
    """``config`` in ``target``'s words (one of ``TARGETS``).

    Args:
        script: The training script, for the command lines (default: the one the config
            was tuned for, by its path beside ``config_path`` when it is there, else
            ``train.py``).
        config_path: Where the config lives, for ``$AUTOACCEL_CONFIG``.

    Raises:
        ValueError: an unknown target.
        UsageError: a setup the target cannot run as tuned (FSDP on the CPU for Lightning
            or Accelerate), named with the export that can.

    Example:
        >>> out = export(TrainingConfig(batch_size=256, precision="bf16-mixed"), "deepspeed")
        >>> json.loads(out.files["ds_config.json"])["bf16"]
        {'enabled': True}
    """
    if script is None and config.provenance.script:  # tune writes the config beside it
        beside = Path(config_path).parent / config.provenance.script
        script = str(beside) if beside.is_file() else config.provenance.script
    script = script or "train.py"
    makers: dict[str, Callable[[], Export]] = {
        "lightning": lambda: _lightning(config),
        "accelerate": lambda: _accelerate(config, script),
        "deepspeed": lambda: _deepspeed(config),
        "torchrun": lambda: _torchrun(config, script, config_path),
        "env": lambda: _env(config, config_path),
    }
    if target not in makers:
        raise ValueError(f"unknown export target {target!r}; use one of {', '.join(TARGETS)}")
    return makers[target]()
