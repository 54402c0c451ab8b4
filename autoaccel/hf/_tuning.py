"""What one ``autoaccel.hf.Trainer`` applies and when: your ``TrainingArguments`` against the
config (as fields of a copy, ``accelerate launch``'s environment included), the tuned
schedule where the Trainer makes its own, and a trial's session through its callback."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import math
import os
import socket
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import transformers

from autoaccel.config import TrainingConfig
from autoaccel.errors import UsageError
from autoaccel.launchers import deepspeed_pins
from autoaccel.process import apply_process_settings
from autoaccel.runtime.prepare import (
    check_processes,
    hook_facts,
    run_config,
    trial_facts,
    trial_session,
)
from autoaccel.runtime.run import StepObserver
from autoaccel.schedule import apply_lr, apply_momentum, build_scheduler, lr_multiplier
from autoaccel.trials.hook import EvaluateFn
from autoaccel.trials.protocol import TrialSpec

__all__ = [
    "FIXED",
    "LAUNCHER_COMPILE",
    "LAUNCHER_PRECISION",
    "Tuning",
    "TuningCallback",
    "launcher_overruled",
    "loss_of",
    "rank",
    "samples_in",
    "world_size",
]

#: Knobs a Hugging Face Trainer does not take from autoaccel, and why: not searched.
FIXED = {
    "batch_fetch": "the Trainer builds its own DataLoader",
    "optimizer_impl": "the Trainer's optim argument picks the optimizer's implementation",
    "strategy": "DDP under torchrun; FSDP is the Trainer's own fsdp argument",
}


#: What ``accelerate launch`` tells the Trainer through the environment (its config file's
#: ``mixed_precision`` and ``dynamo_config``): the precision TrainingArguments trains at
#: where neither ``bf16`` nor ``fp16`` is set, and the backend the accelerator compiles with.
LAUNCHER_PRECISION = "ACCELERATE_MIXED_PRECISION"
LAUNCHER_COMPILE = "ACCELERATE_DYNAMO_BACKEND"
_PRECISIONS = {"no": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}

#: The knob each ``TrainingArguments`` field that carries a config sets, where a DeepSpeed
#: config can set it too.
_KNOB_OF_FIELD = {
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum_steps",
    "bf16": "precision",
    "fp16": "precision",
    "learning_rate": "lr",
}


class Tuning:
    """What one Trainer applies: the config (None: your own settings) and the trial."""

    def __init__(
        self, chosen: TrainingConfig | None, trial: TrialSpec | None, dataset_size: int
    ) -> None:
        self.chosen, self.trial, self.dataset_size = chosen, trial, dataset_size
        self.threads = torch.get_num_threads()
        self.user: TrainingConfig | None = None
        self.user_lr = 0.0
        self.scheduler_type = "linear"  # yours (HF's default), replaced by a tuned schedule
        self.lr: float | None = None  # the config's LR for an optimizer of your own
        self.notes: list[str] = []
        self.observer: StepObserver | None = None
        self.evaluate: EvaluateFn | None = None  # the Trainer's, with an eval_dataset
        self.losses: list[torch.Tensor] = []  # this optimizer step's micro-batch losses
        self.fetched = 0  # the samples of this optimizer step
        self.loss_checked = False  # HF's loss scaling under several processes
        self.own_samples: int | None = None  # your arguments' training, in samples
        self.own_length = (-1, 0.0)  # your max_steps and num_train_epochs
        self.pins: dict[str, str] = {}  # knobs your DeepSpeed config sets, with its settings
        self.own_scheduler = False  # you passed the Trainer a scheduler

    def loss_scaling_unchecked(self, trainer: transformers.Trainer) -> bool:
        """Whether the Trainer would scale the loss by the process count and autoaccel has
        not yet checked that the model takes the item count it is scaled for; only where
        autoaccel applies a config or measures a trial (else HF runs as it would)."""
        return (
            not self.loss_checked
            and (self.chosen is not None or self.trial is not None)
            and world_size() > 1
            and bool(trainer.model_accepts_loss_kwargs)
            and bool(trainer.args.average_tokens_across_devices)
            and trainer.compute_loss_func is None
        )

    @classmethod
    def start(
        cls,
        given: transformers.TrainingArguments,
        dataset: Any,
        config: TrainingConfig | str | os.PathLike[str] | None,
    ) -> Tuning:
        try:
            size = len(dataset)
        except TypeError:
            raise UsageError(
                "autoaccel.hf.Trainer needs a train_dataset with a len() (a map-style "
                "dataset): the batch size and loader settings are tuned over it"
            ) from None
        trial, chosen = run_config(config)
        if chosen is not None and chosen.strategy == "fsdp":
            raise UsageError(
                "this config trains FSDP, which autoaccel.hf.Trainer does not set up (the "
                "Trainer's fsdp argument does): tune again with --strategy ddp"
            )
        tuning = cls(chosen, trial, size)
        if trial is not None and given.deepspeed:
            _one_process_rendezvous()
        if chosen is not None:
            check_processes(chosen, world_size(), in_trial=trial is not None)
            apply_process_settings(chosen)
        return tuning

    def arguments(
        self, given: transformers.TrainingArguments, own_optimizer: bool
    ) -> transformers.TrainingArguments:
        """A copy of your arguments with the config's fields (``learning_rate`` does not
        reach an optimizer you passed: the LR is set in it when training starts); in a
        trial, training that goes on until it is measured and saves and reports nothing."""
        self.user = user_config_of(given, self.threads)
        self.own_samples = _own_samples(given, self.user, self.dataset_size)
        self.own_length = (given.max_steps, float(given.num_train_epochs))
        self.user_lr = given.learning_rate
        self.scheduler_type = str(getattr(given.lr_scheduler_type, "value", "linear"))
        self.pins = deepspeed_pins(_deepspeed_config_of(given))
        changes: dict[str, Any] = {}
        if self.chosen is not None:
            chosen = self.chosen
            changes = self._unpinned(_fields(chosen, self.user, given.learning_rate), given)
            if own_optimizer:
                self.lr = changes.pop("learning_rate", None)
            self.notes += _not_applied(chosen)
            said = ", ".join(
                f"{k} {getattr(given, k)!r} -> {v!r}"
                for k, v in changes.items()
                if getattr(given, k) != v
            )
            said = ", ".join([*filter(None, [said]), *_launcher_changes(self.user, chosen)])
            if said:
                self.notes.insert(0, f"applied from the config: {said}")
        if self.trial is not None:
            changes |= {"max_steps": 10**9, "save_strategy": "no", "report_to": "none"}
            # The trial scores held-out data at its own times; HF's evaluations would
            # pause its measured steps.
            changes |= {"disable_tqdm": True, "eval_strategy": "no"}
            changes |= {"load_best_model_at_end": False}
        if not changes:
            return given
        with launcher_overruled(self.chosen is not None):  # HF reads it in __post_init__
            return dataclasses.replace(given, **changes)

    def _unpinned(
        self, fields: dict[str, Any], given: transformers.TrainingArguments
    ) -> dict[str, Any]:
        """``fields`` less those your DeepSpeed config sets (HF refuses arguments that
        differ from it): its values win, each said once; so does its scheduler."""
        chosen = self.chosen
        assert chosen is not None, "only a config is applied"
        said = set()
        for name in [n for n in fields if _KNOB_OF_FIELD.get(n) in self.pins]:
            if fields[name] == getattr(given, name):
                continue
            value = fields.pop(name)
            knob = _KNOB_OF_FIELD[name]
            if knob not in said:
                said.add(knob)
                tuned = value if knob == "lr" else getattr(chosen, knob)
                self.notes.append(_wins(self.pins[knob], f"the config's {knob} {tuned}"))
        if "schedule" in self.pins and chosen.scheduled:
            self.notes.append(_wins(self.pins["schedule"], f"the tuned {chosen.schedule} schedule"))
        return fields

    def fixed(self) -> dict[str, str]:
        """The knobs the tuner does not search here, with why: what the Trainer does not
        take from autoaccel, and what your DeepSpeed config sets."""
        return FIXED | {
            knob: f'your DeepSpeed config sets it ({words}; "auto" lets autoaccel tune it)'
            for knob, words in self.pins.items()
        }

    def run_steps(self, args: transformers.TrainingArguments, steps: int) -> int:
        """The optimizer steps HF's scheduler spans: ``steps`` in a normal run; in a trial,
        which trains until it is measured (``max_steps`` 10**9, so HF's linear decay would
        hold your LR all the way), the steps your ``max_steps`` or ``num_train_epochs``
        make at the trial's batch, counted as HF counts them (``set_initial_training_values``
        over a loader sharded over the processes). Your setup's loss curve then decays as
        your own training does, and ends where it ends (the LR at 0 after it): a trial of a
        time-to-loss study or a convergence check compares a pick with your schedule, not
        with your LR held (the HF example's own 3 epochs end near 0.37, held near 0.39)."""
        if self.trial is None:
            return steps
        max_steps, epochs = self.own_length
        if max_steps > 0:
            return max_steps
        size, per_device = self.dataset_size, args.per_device_train_batch_size
        batches = size // per_device if args.dataloader_drop_last else -(-size // per_device)
        shard = -(-batches // world_size())  # accelerate's even split over the processes
        per_epoch = max(-(-shard // args.gradient_accumulation_steps), 1)
        return max(math.ceil(epochs * per_epoch), 1)

    def schedule(
        self, optimizer: torch.optim.Optimizer, total_steps: int, yours: bool
    ) -> torch.optim.lr_scheduler.LambdaLR | None:
        """The config's warm-up and decay as a scheduler (None: HF's stands): over the whole
        run in a normal run (``total_steps``), over the steps it was tuned for in a trial."""
        chosen = self.chosen
        if chosen is None or not chosen.scheduled:
            return None
        if yours:
            self.notes.append(
                f"your lr_scheduler wins over the tuned {chosen.schedule} schedule (pass "
                "none to the Trainer to apply it)"
            )
            return None
        if self.trial is None:
            chosen = dataclasses.replace(chosen, schedule_steps=total_steps)
            self.notes.append(
                f"the tuned {chosen.schedule} schedule ({chosen.warmup_steps} warm-up steps) "
                f"over the run's {total_steps} optimizer steps, in place of "
                f"lr_scheduler_type {self.scheduler_type}"
            )
        return build_scheduler(optimizer, chosen)

    def training_starts(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
    ) -> None:
        """The optimizer exists now: set the tuned momentum (and LR, in an optimizer of
        yours); in a trial, start its session, else say the notes."""
        if self.lr is not None:
            self.notes += apply_lr(optimizer, self.lr, scheduler=scheduler)
        if self.chosen is not None and self.chosen.momentum is not None:
            if "momentum" in self.pins:
                tuned = f"the config's momentum {self.chosen.momentum}"
                self.notes.append(_wins(self.pins["momentum"], tuned))
            else:
                self.notes += apply_momentum(optimizer, self.chosen.momentum)
        if self.trial is None:
            if rank() == 0:
                for note in dict.fromkeys(self.notes):
                    print(f"autoaccel: {note}", file=sys.stderr)
            return
        assert self.user is not None, "arguments() runs first, in __init__"
        device = next(model.parameters()).device
        facts = trial_facts(model, optimizer, None, self.user, device, self.notes)
        facts |= {"dataset_size": self.dataset_size, "fixed": self.fixed()}
        facts["own_samples"] = self.own_samples
        facts |= hook_facts(self.trial, model, self.evaluate, "Trainer.evaluate()")
        facts["optimizer_lr"] = self.user_lr
        # The meter sees optimizer steps (the Trainer fetches a step's micro-batches at
        # once): a loss-curve session counts them as steps of no accumulation.
        per_step = dataclasses.replace(self.chosen or self.user, grad_accum_steps=1)
        processes = (rank(), world_size())
        self.observer = trial_session(
            self.trial, facts, model, optimizer, self.evaluate, per_step, processes, device
        )

    def step_ended(self) -> None:
        """An optimizer step ended: the meter gets its mean micro-batch loss."""
        if self.observer is None:
            return
        losses, self.losses = self.losses, []
        loss = torch.stack(losses).mean() if losses else None
        self.observer.step_end(loss, self.fetched)


class TuningCallback(transformers.TrainerCallback):
    def __init__(self, tuning: Tuning) -> None:
        self.tuning = tuning

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Accelerate's wrappers hold the optimizer and scheduler
        optimizer, scheduler = kwargs["optimizer"], kwargs.get("lr_scheduler")
        self.tuning.training_starts(
            kwargs["model"],
            getattr(optimizer, "optimizer", optimizer),
            getattr(scheduler, "scheduler", scheduler),
        )

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.tuning.step_ended()


def user_config_of(given: transformers.TrainingArguments, threads: int) -> TrainingConfig:
    """Your own arguments as a config: what your run trains with, ``accelerate launch``'s
    precision and compile backend included (HF takes them from the launcher where your
    arguments set none)."""
    precision = "bf16-mixed" if given.bf16 else "16-mixed" if given.fp16 else _launched()
    workers = given.dataloader_num_workers
    world = max(1, world_size())
    return TrainingConfig(
        batch_size=given.per_device_train_batch_size,
        grad_accum_steps=given.gradient_accumulation_steps,
        num_workers=workers,
        pin_memory=bool(given.dataloader_pin_memory) and torch.cuda.is_available(),
        persistent_workers=bool(given.dataloader_persistent_workers) and workers > 0,
        prefetch_factor=given.dataloader_prefetch_factor if workers > 0 else None,
        precision=precision,
        compile=bool(given.torch_compile) or _launcher_compiles(),
        processes=world,
        strategy="ddp" if world > 1 else "none",
        num_threads=threads,
        device="cpu" if given.use_cpu or not torch.cuda.is_available() else "cuda",
    )


def _launched() -> str:
    """The precision ``accelerate launch`` set (32-true without it).

    Raises:
        UsageError: one autoaccel does not tune (fp8).
    """
    launched = os.environ.get(LAUNCHER_PRECISION, "no").lower()
    if launched not in _PRECISIONS:
        raise UsageError(
            f"accelerate launch trains this script at mixed precision {launched!r} "
            f"({LAUNCHER_PRECISION}), which autoaccel does not tune: launch it with "
            "mixed_precision bf16, fp16 or no"
        )
    return _PRECISIONS[launched]


def _launcher_compiles() -> bool:
    return os.environ.get(LAUNCHER_COMPILE, "no").lower() != "no"


def _launcher_changes(user: TrainingConfig, chosen: TrainingConfig) -> list[str]:
    """What the config changes of what ``accelerate launch`` set (not in your arguments)."""
    changes = []
    launched = os.environ.get(LAUNCHER_PRECISION, "no").lower()
    if launched != "no" and user.precision != chosen.precision:
        changes.append(f"{LAUNCHER_PRECISION} {launched} (accelerate launch) -> {chosen.precision}")
    if _launcher_compiles() and not chosen.compile:
        backend = os.environ[LAUNCHER_COMPILE].lower()
        changes.append(f"{LAUNCHER_COMPILE} {backend} (accelerate launch) -> no compile")
    return changes


@contextlib.contextmanager
def launcher_overruled(overruled: bool) -> Iterator[None]:
    """Where a config applies, ``accelerate launch``'s precision and compile backend out of
    the environment while HF reads them: the config's ``bf16`` / ``fp16`` /
    ``torch_compile`` decide (HF falls back on the launcher's where they name none, so a
    32-true config under a bf16 launch trained at bf16). Restored after."""
    held = {}
    if overruled:
        held = {
            k: os.environ.pop(k) for k in (LAUNCHER_PRECISION, LAUNCHER_COMPILE) if k in os.environ
        }
    try:
        yield
    finally:
        os.environ.update(held)


def _deepspeed_config_of(given: transformers.TrainingArguments) -> dict[str, Any]:
    """Your ``TrainingArguments``' DeepSpeed config as you wrote it (``"auto"`` values kept):
    the dict, or the JSON file it names (or base64 JSON, as Accelerate reads it); {} with
    none. HF has read it already, so it is well formed."""
    value = given.deepspeed
    if not value:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    path = Path(value)
    text = path.read_text() if path.is_file() else base64.urlsafe_b64decode(value).decode()
    data = json.loads(text)
    return data if isinstance(data, dict) else {}


def _wins(settings: str, tuned: str) -> str:
    return (
        f'your DeepSpeed config\'s {settings} wins over {tuned} (set it to "auto" to apply '
        "the tuned value)"
    )


def _one_process_rendezvous() -> None:
    """A trial of one process runs as ``python train.py``; DeepSpeed, which your arguments
    start, then looks for MPI to find its process group. Its own launcher (``deepspeed
    train.py``) tells it this process is the whole group, on this machine: so does this."""
    if "RANK" in os.environ:
        return  # under torchrun (several processes)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ |= {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def _own_samples(
    given: transformers.TrainingArguments, user: TrainingConfig, dataset_size: int
) -> int | None:
    """The samples your arguments train: ``max_steps`` optimizer steps of your global
    batch, or ``num_train_epochs`` passes over the data."""
    if given.max_steps and given.max_steps > 0:
        return given.max_steps * user.global_batch
    epochs = float(given.num_train_epochs)
    return round(epochs * dataset_size) if epochs > 0 else None


def _fields(chosen: TrainingConfig, user: TrainingConfig, user_lr: float) -> dict[str, Any]:
    """The ``TrainingArguments`` fields that carry ``chosen``."""
    fields: dict[str, Any] = {
        "per_device_train_batch_size": chosen.batch_size,
        "gradient_accumulation_steps": chosen.grad_accum_steps,
        "bf16": chosen.precision == "bf16-mixed",
        "fp16": chosen.precision == "16-mixed",
        "dataloader_num_workers": chosen.num_workers,
        "dataloader_persistent_workers": chosen.persistent_workers and chosen.num_workers > 0,
        "dataloader_prefetch_factor": chosen.prefetch_factor if chosen.num_workers else None,
        "torch_compile": chosen.compile,
    }
    if torch.cuda.is_available():  # without a GPU, pinning changes nothing
        fields["dataloader_pin_memory"] = chosen.pin_memory
    # Without use_cpu, HF refuses bf16 on a machine with no GPU ("Your setup doesn't
    # support bf16/gpu"): every bf16 trial of a CPU tune failed so. "auto" is the CPU where
    # torch can use no GPU.
    fields["use_cpu"] = chosen.device == "cpu" or not torch.cuda.is_available()
    if chosen.precision == "tf32":
        fields["tf32"] = True
    if chosen.lr is not None:
        fields["learning_rate"] = chosen.lr
    elif chosen.lr_scaling != "none" and chosen.global_batch != user.global_batch:
        factor = lr_multiplier(chosen.lr_scaling, user.global_batch, chosen.global_batch)
        fields["learning_rate"] = user_lr * factor
    return fields


def _not_applied(chosen: TrainingConfig) -> list[str]:
    notes = []
    if chosen.optimizer_impl not in ("default", ""):
        notes.append(f"optimizer_impl {chosen.optimizer_impl} is not applied: use optim=")
    return notes


def loss_of(outputs: Any) -> torch.Tensor | None:
    """The loss a model's forward returned (a ModelOutput, a dict or a tuple)."""
    if isinstance(outputs, dict):
        loss = outputs.get("loss")
    else:
        loss = outputs[0] if isinstance(outputs, (list, tuple)) and outputs else None
    return loss if isinstance(loss, torch.Tensor) else None


def samples_in(batch: Any) -> int:
    """Samples in one batch of the Trainer's loader (a dict of tensors, usually)."""
    if isinstance(batch, dict):
        first = next((v for v in batch.values() if isinstance(v, torch.Tensor)), None)
        return len(first) if first is not None else 0
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return len(batch[0])
    return len(batch) if isinstance(batch, torch.Tensor) else 0


def rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))
