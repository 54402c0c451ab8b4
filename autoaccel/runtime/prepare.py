"""``prepare()``: the few lines a training script adds to run with a tuned config.

In a normal run ``prepare()`` finds ``autoaccel.yaml`` (``autoaccel.config.find_config``:
``config=``, ``$AUTOACCEL_CONFIG``, beside the script, then the working directory) and
applies it; with none it changes nothing and says how to tune. Under ``autoaccel tune``
(``AUTOACCEL_TRIAL`` set) it applies the trial's config and hands the run to a
``TrialSession`` (``autoaccel.trials.session``), which measures the steps, writes the
result and ends the script. Under torchrun it joins the process group, wraps the model in
DDP and shards the data.
"""

from __future__ import annotations

import atexit
import os
import shlex
import sys
import time
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from autoaccel.config import TrainingConfig, find_config, load_config
from autoaccel.errors import DataError, UsageError
from autoaccel.probe import probe_system
from autoaccel.process import apply_process_settings
from autoaccel.runtime.data import DataSpec, GlobalOrderSampler, build_loader, describe_data
from autoaccel.runtime.device import apply_optimizer_impl, choose_device, cuda_count, place
from autoaccel.runtime.run import Run, StepObserver, has_conv, model_device, model_fingerprint
from autoaccel.schedule import (
    LR_KNOBS,
    apply_lr,
    apply_momentum,
    build_scheduler,
    hold_after,
    momentum_of,
    scale_lr,
    sets_lr,
    unpassed_scheduler,
)
from autoaccel.trials.curve_session import CurveSession
from autoaccel.trials.hook import call_hook, check_hook
from autoaccel.trials.protocol import TrialSpec, read_trial_spec
from autoaccel.trials.session import TrialSession

__all__ = [
    "apply_lr_settings",
    "check_processes",
    "for_this_model",
    "hook_facts",
    "prepare",
    "run_config",
    "trial_facts",
    "trial_session",
    "tuned_config",
    "tuned_schedule",
]

_HINT = (
    "autoaccel: no autoaccel.yaml found, so your own settings run unchanged. "
    "Tune them with: autoaccel tune {script}"
)


@dataclass(frozen=True)
class _Processes:
    """This process's place under torchrun: (0, 1) when it runs alone."""

    rank: int
    world: int

    @classmethod
    def join(cls) -> _Processes:
        """Start the process group when torchrun launched several processes."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(0, 1)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
            # A group left alive at exit aborts the process ("terminate called without an
            # active exception") while its gloo threads still run; end it first.
            atexit.register(_leave_process_group)
        return cls(dist.get_rank(), dist.get_world_size())


# How long the process gives the process group's worker threads the GIL before Python
# finalizes (see _leave_process_group).
_DRAIN_S = 0.2
# Optimizers prepare() has set the LR of (it records their ``initial_lr`` as a scheduler
# does): not taken for ones a scheduler was made on.
_PREPARED: weakref.WeakSet[torch.optim.Optimizer] = weakref.WeakSet()


def _leave_process_group() -> None:
    """End the process group while Python still runs, then let its threads finish.

    A gloo worker thread drops a finished collective (and the tensors it held, whose Python
    objects need the GIL) just after the caller sees it done. If that drop lands in Python's
    finalization the thread cannot take the GIL and the process aborts with "terminate called
    without an active exception" (pytorch/pytorch#190489; seen here after FSDP's
    ``full_tensor()`` and the sampler's broadcast at a script's end, about 1 run in 20 under
    load). Sleeping hands those threads the GIL while it can still be taken.
    """
    if dist.is_initialized():
        dist.destroy_process_group()
        time.sleep(_DRAIN_S)


def prepare(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Any = None,
    *,
    loader_kwargs: Mapping[str, Any] | None = None,
    scheduler: Any = None,
    config: TrainingConfig | str | os.PathLike[str] | None = None,
    batch_size: int | None = None,
    grad_accum_steps: int = 1,
    total_steps: int | None = None,
    evaluate: Callable[[], Any] | None = None,
) -> Run:
    """Apply the tuned config (or a tuner's trial) to a training script's objects.

    Args:
        model: The model, on the device it trains on.
        optimizer: Its optimizer.
        data: A Dataset, a DataLoader or tensors ``(X, y)``; None when the script batches
            by itself (then read ``run.batch_size`` and ``run.grad_accum_steps``).
        loader_kwargs: The script's own loader settings for a Dataset (batch_size,
            shuffle, collate_fn, drop_last, num_workers, ...).
        scheduler: The script's LR scheduler; it wins over a tuned schedule (said once).
        config: A ``TrainingConfig`` or a path; the default looks for autoaccel.yaml.
        batch_size: The script's own batch size when it batches by itself.
        grad_accum_steps: The script's own gradient accumulation.
        total_steps: Optimizer steps the whole run takes (epochs x batches per epoch /
            accumulation); a tuned decaying schedule is stretched over them. Without it the
            decay spans the steps it was tuned for, and prepare() says so.
        evaluate: Your validation, as a function of no arguments that returns the held-out
            loss (a number), or a dict with it under ``"loss"`` and metrics under their
            names. Only a tuner's trials call it (in eval mode, without gradients), so
            ``autoaccel tune --objective time-to-loss`` can measure how soon a setup learns;
            a normal run never does.

    Returns:
        The ``Run``: ``run.loader``, ``run.autocast()``, ``run.backward(loss)``,
        ``run.step()``, ``run.model``, ``run.optimizer``, ``run.scheduler``, ``run.device``.

    Raises:
        ConfigError: a named config file that is missing or invalid.
        DataError: the data cannot be used.

    Example:
        >>> run = autoaccel.prepare(model, optimizer, dataset,       # doctest: +SKIP
        ...                         loader_kwargs={"batch_size": 64, "shuffle": True})
        >>> for x, y in run.loader:                                  # doctest: +SKIP
        ...     with run.autocast():
        ...         loss = loss_fn(run.model(x), y)
        ...     run.backward(loss)
        ...     run.step()
    """
    _check_arguments(model, optimizer, config)
    evaluate = check_hook(evaluate)
    spec = describe_data(data, loader_kwargs=loader_kwargs) if data is not None else None
    if spec is None and loader_kwargs and batch_size is None:
        batch_size = loader_kwargs.get("batch_size")
    user = _user_config(spec, batch_size, grad_accum_steps, model_device(model))
    trial, found = run_config(config)
    if trial is None and found is not None:
        found = for_this_model(found, model)
    chosen = found if found is not None else user
    processes = _Processes.join()
    check_processes(chosen, processes.world, in_trial=trial is not None)
    hidden = scheduler is None and optimizer not in _PREPARED and unpassed_scheduler(optimizer)
    if hidden:
        _refuse_hidden_scheduler(chosen, user, trial)
    device, notes = _place(model, optimizer, chosen, processes)
    apply_process_settings(chosen)
    notes += apply_lr_settings(optimizer, chosen, user, scheduler)
    _PREPARED.add(optimizer)
    chosen, tuned_scheduler = tuned_schedule(
        optimizer, chosen, scheduler, total_steps, trial, notes
    )
    loader = _loader(spec, chosen, processes) if spec is not None else None
    observer: StepObserver | None = None
    if trial is not None:
        facts = trial_facts(model, optimizer, spec, user, device, notes)
        facts.update(hook_facts(trial, model, evaluate))
        facts["unpassed_scheduler"] = hidden
        observer = trial_session(
            trial,
            facts,
            model,
            optimizer,
            evaluate,
            chosen,
            (processes.rank, processes.world),
            device,
        )
        if trial.lr_sweep is not None:  # the sweep sets the LR of every step itself
            scheduler = tuned_scheduler = None
        span = total_steps or _own_span(scheduler)
        if scheduler is not None and isinstance(span, int) and span > 0:
            # a trial trains on past your training: your scheduler holds your last LR
            hold_after(scheduler, span)
    elif processes.rank == 0:
        for note in notes:
            print(f"autoaccel: {note}", file=sys.stderr)
    return Run(
        model,
        optimizer,
        chosen,
        loader=loader,
        scheduler=scheduler or tuned_scheduler,
        device=device,
        observer=observer,
        distributed=processes.world > 1,
    )


def trial_session(
    trial: TrialSpec,
    facts: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    evaluate: Callable[[], Any] | None,
    chosen: TrainingConfig,
    processes: tuple[int, int],
    device: torch.device,
) -> StepObserver:
    """The script side of a tuner's trial: a loss-curve run, or a measuring one (an LR
    range test too). ``processes``: this process's (rank, world size)."""
    rank, world = processes
    if trial.curve is not None:
        return CurveSession(
            trial,
            facts,
            model=model,
            evaluate=evaluate,
            accumulation=chosen.grad_accum_steps,
            rank=rank,
            world=world,
            device=device,
        )
    return TrialSession(trial, facts, rank=rank, world=world, device=device, optimizer=optimizer)


def _check_arguments(model: Any, optimizer: Any, config: Any) -> None:
    """Refuse arguments of the wrong kind with one line, not a traceback from deep inside.

    Raises:
        UsageError: naming the argument, what it must be and what it got.
    """
    expected = (
        ("model", model, nn.Module, "a torch.nn.Module"),
        ("optimizer", optimizer, torch.optim.Optimizer, "a torch.optim.Optimizer"),
    )
    for name, value, kind, words in expected:
        if not isinstance(value, kind):
            raise UsageError(f"prepare(): {name} must be {words}, got {type(value).__name__}")
    if config is not None and not isinstance(config, (TrainingConfig, str, os.PathLike)):
        raise UsageError(
            "prepare(): config must be a TrainingConfig or the path of an autoaccel.yaml, "
            f"got {type(config).__name__} {config!r:.40}"
        )


def _user_config(
    spec: DataSpec | None, batch_size: int | None, grad_accum_steps: int, device: torch.device
) -> TrainingConfig:
    """What the script asked for itself, as a config: on the device it left the model on
    (with no config, a run trains where the script put the model)."""
    base = spec.user_config() if spec is not None else TrainingConfig(batch_size=batch_size or 32)
    return replace(
        base,
        grad_accum_steps=grad_accum_steps,
        num_threads=torch.get_num_threads(),
        device=str(device),
        cudnn_benchmark=torch.backends.cudnn.benchmark,
    )


def run_config(
    config: TrainingConfig | str | os.PathLike[str] | None,
) -> tuple[TrialSpec | None, TrainingConfig | None]:
    """What this run trains with: under a tuner, its trial and the trial's config (None
    for the baseline: the script's own settings), and the tuner is told the script reached
    autoaccel; in a normal run, no trial and the config given or found (None: none)."""
    trial = read_trial_spec()
    if trial is None:
        return None, tuned_config(config)
    Path(trial.started_path).touch()
    return trial, None if trial.baseline else trial.trial_config()


def tuned_config(
    config: TrainingConfig | str | os.PathLike[str] | None,
) -> TrainingConfig | None:
    """The config a normal run applies: given, or found; None (said once, with how to
    tune) when there is none, and the script's own settings run."""
    if isinstance(config, TrainingConfig):
        return config
    running = sys.argv[0] if sys.argv else ""
    path = find_config(config, script=running)
    if path is None:
        script = Path(running).name if running else "train.py"
        print(_HINT.format(script=shlex.quote(script)), file=sys.stderr)
        return None
    profile = probe_system()
    loaded = load_config(path, profile=profile)
    mismatch = loaded.hardware_mismatch(profile)
    if mismatch:
        warnings.warn(mismatch, stacklevel=3)
    return loaded


#: The knobs that follow the model and its data, not the machine: a config tuned for
#: another script or model keeps the script's own values for them.
_MODEL_KNOBS: dict[str, Any] = {
    f.name: f.default for f in fields(TrainingConfig) if f.name in LR_KNOBS
}


def for_this_model(chosen: TrainingConfig, model: nn.Module) -> TrainingConfig:
    """``chosen``, less its learning-rate knobs when it was tuned for another script or
    model (its provenance says which), with a loud warning; the system knobs still apply.
    Deleting ``provenance.script`` and ``provenance.model`` from the file applies it all."""
    recorded = chosen.provenance
    running = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else None
    others = []
    if recorded.script and running and recorded.script != running:
        others.append(f"script {recorded.script}, not {running}")
    if recorded.model and recorded.model != model_fingerprint(model):
        others.append("another model (its parameter shapes differ)")
    if not others:
        return chosen
    warnings.warn(
        f"this config was tuned for {' and '.join(others)}: its learning-rate settings are "
        "NOT applied (your script's own are kept), its system settings are. Tune this "
        "script (`autoaccel tune`), or delete provenance.script and provenance.model from "
        "the file to apply it all.",
        stacklevel=3,
    )
    return chosen.replace(**_MODEL_KNOBS)


def _refuse_hidden_scheduler(
    chosen: TrainingConfig, user: TrainingConfig, trial: TrialSpec | None
) -> None:
    """A scheduler made on the optimizer but not given to ``prepare()`` puts your LR back
    at its first step: where the config (or a trial's LR sweep) sets the LR, it would train
    something other than what was tuned.

    Raises:
        UsageError: naming what the config sets and the fix.
    """
    setting = sets_lr(chosen, user)
    if trial is not None and trial.lr_sweep is not None:
        setting.append("an LR range test")
    if setting:
        raise UsageError(
            f"your optimizer has an LR scheduler that prepare() was not given, and "
            f"{'the trial' if trial else 'the config'} sets the LR ({', '.join(setting)}): "
            "pass it as prepare(..., scheduler=your_scheduler), so that it starts from that "
            "LR instead of putting yours back at its first step"
        )


def _own_span(scheduler: object) -> int | None:
    """The optimizer steps your scheduler says it spans itself: OneCycleLR's
    ``total_steps`` (stepped past them it raises), CosineAnnealingLR's ``T_max`` (stepped
    past it, the LR climbs back to its peak); None for a schedule with no end of its own."""
    if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
        return scheduler.total_steps
    if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        return scheduler.T_max
    return None


def check_processes(chosen: TrainingConfig, world: int, *, in_trial: bool) -> None:
    """Warn when a normal run has another process count on this machine than the config
    was tuned for: each process takes the tuned batch, so the global batch (and an LR
    scaled for it) is not the tuned one. A trial's processes are the tuner's own; on
    several nodes, this node's are torchrun's ``LOCAL_WORLD_SIZE`` of the ``world``."""
    world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if in_trial or chosen.processes == world:
        return
    if world == 1:
        warnings.warn(
            f"this config asks for DDP over {chosen.processes} processes; start the "
            "script with `autoaccel run script.py` (it uses torchrun). Running in "
            "one process.",
            stacklevel=3,
        )
        return
    warnings.warn(
        f"this config was tuned for {chosen.processes} process(es) and this run has {world}: "
        f"the global batch is {world}/{chosen.processes} of the tuned one; start the script "
        "with `autoaccel run script.py`, which launches the config's processes",
        stacklevel=3,
    )


def _place(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    chosen: TrainingConfig,
    processes: _Processes,
) -> tuple[torch.device, list[str]]:
    """Put the model and its optimizer's state on the device the config decides
    (``autoaccel.runtime.device``), in the optimizer implementation it names; the notes
    say what moved and what could not be applied."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if processes.world > 1 else None
    choice = choose_device(
        chosen.device, model_device(model), cuda_count=cuda_count(), local_rank=local_rank
    )
    notes = []
    if choice.device.type == "cuda":
        torch.cuda.set_device(choice.device)
    if choice.moved:
        place(model, optimizer, choice.device)
    if choice.moved or choice.device.type != "cpu":  # moved, or kept on your GPU: said
        notes.append(f"training on {choice.device} ({choice.reason})")
    refused = apply_optimizer_impl(optimizer, chosen.optimizer_impl)
    if refused:
        notes.append(refused)
    return choice.device, notes


def apply_lr_settings(
    optimizer: torch.optim.Optimizer, chosen: TrainingConfig, user: TrainingConfig, scheduler: Any
) -> list[str]:
    """The config's LR (tuned for its batch) or its scaling rule, and its momentum."""
    notes = []
    if chosen.lr is not None:
        notes += apply_lr(optimizer, chosen.lr, scheduler=scheduler)
    else:
        notes += scale_lr(
            optimizer,
            user.global_batch,
            chosen.global_batch,
            chosen.lr_scaling,
            scheduler=scheduler,
        )
    if chosen.momentum is not None:
        notes += apply_momentum(optimizer, chosen.momentum)
    return notes


def tuned_schedule(
    optimizer: torch.optim.Optimizer,
    chosen: TrainingConfig,
    scheduler: Any,
    total_steps: int | None,
    trial: TrialSpec | None,
    notes: list[str],
) -> tuple[TrainingConfig, Any]:
    """The tuned schedule as a scheduler, stretched over ``total_steps`` when given (not in
    a trial: a study's candidate spans the steps it is measured over, ``schedule_steps``, and
    a script's ``total_steps`` under a trial may count the 10**6 epochs it trains on for);
    the script's own scheduler wins (a note says so)."""
    if chosen.schedule != "constant" and total_steps is not None and trial is None:
        chosen = replace(chosen, schedule_steps=total_steps)
    elif chosen.schedule != "constant" and trial is None:
        notes.append(
            f"the tuned {chosen.schedule} schedule decays over {chosen.schedule_steps} "
            "optimizer steps (as it was tuned); pass total_steps= to prepare() "
            "to stretch it over your whole run"
        )
    tuned = build_scheduler(optimizer, chosen)
    if tuned is not None and scheduler is not None:
        notes.append(
            "your own scheduler is used; the tuned schedule "
            f"({chosen.schedule}, {chosen.warmup_steps} warm-up steps) is not, because "
            "a scheduler passed to prepare() is explicit code"
        )
        tuned = None
    return chosen, tuned


def _loader(spec: DataSpec, chosen: TrainingConfig, processes: _Processes) -> DataLoader[Any]:
    """The loader with the config's settings; under torchrun each process gets its share
    of the order one process would train on (``GlobalOrderSampler``)."""
    sampler: GlobalOrderSampler | None = None
    if processes.world > 1 and spec.sampler is None:
        sampler = GlobalOrderSampler(
            spec.dataset,
            world=processes.world,
            rank=processes.rank,
            shuffle=spec.shuffle,
            drop_last=spec.drop_last,
            generator=spec.generator,
        )
    return build_loader(spec, chosen, sampler=sampler)


def trial_facts(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    spec: DataSpec | None,
    user: TrainingConfig,
    device: torch.device,
    notes: list[str],
) -> dict[str, Any]:
    """What a trial's report tells the tuner about the script (for the search space)."""
    return {
        "user_config": user.knobs(),
        "parameter_count": sum(p.numel() for p in model.parameters()),
        "dataset_size": len(spec) if spec is not None else None,
        "conv_model": has_conv(model),
        "tensor_data": spec is not None and spec.tensors is not None,
        "device": str(device),
        "notes": notes,
        "optimizer": type(optimizer).__name__,
        "optimizer_lr": float(optimizer.param_groups[0]["lr"]),
        "optimizer_momentum": list(momentum_of(optimizer) or ()) or None,
        "model_fingerprint": model_fingerprint(model),
    }


def hook_facts(
    trial: TrialSpec,
    model: nn.Module,
    evaluate: Callable[[], Any] | None,
    name: str = "evaluate() hook",
) -> dict[str, Any]:
    """Whether the script has an evaluate hook (called ``name`` in what the tuner says:
    a Trainer's is its own validation), and, in the baseline, what it gives on the
    untrained model (or why it fails): the tuner checks it before any search."""
    facts: dict[str, Any] = {"has_hook": evaluate is not None}
    if evaluate is not None:
        facts["hook_name"] = name
    if evaluate is None or not trial.baseline:
        return facts
    try:
        facts["held_out_start"] = list(call_hook(evaluate, model, trial.metric))
    except DataError as error:
        facts["hook_error"] = str(error)
    return facts
