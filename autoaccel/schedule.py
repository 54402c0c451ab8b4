"""Learning rates: schedules from a config, the rule tying LR to batch size, the range test.

- ``build_scheduler`` returns a ``LambdaLR`` stepped once per optimizer step (``Run.step()``
  steps it only when the optimizer steps, so gradient accumulation is handled).
- ``scaling_rule``/``scale_lr``: when the global batch changes, the LR follows it, linearly
  for SGD-family optimizers and by the square root for adaptive (Adam-family) ones
  (Goyal et al. 2017; Malladi et al. 2022), in every param group.
- ``RangeSweep``: Smith's LR range test, step by step in any loop (in-process or a
  script's), with a suggestion below the loss minimum rather than at the steepest point of
  the whole curve; its one default sweep is ``autoaccel.budget``'s ``SWEEP_*``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from autoaccel.budget import SWEEP_MAX_LR, SWEEP_MIN_LR, SWEEP_STEPS
from autoaccel.config import Provenance, TrainingConfig

__all__ = [
    "LR_KNOBS",
    "LrFinding",
    "OptimizerFacts",
    "RangeSweep",
    "apply_lr",
    "apply_momentum",
    "build_scheduler",
    "hold_after",
    "lr_factor",
    "lr_multiplier",
    "momentum_of",
    "scale_lr",
    "scaling_rule",
    "sets_lr",
    "suggest_lr",
    "sweep_config",
    "unpassed_scheduler",
]

#: Optimizers whose LR scales linearly with the batch (plain gradient steps).
SGD_FAMILY = ("SGD", "ASGD", "LARS")
#: Adaptive optimizers: square-root scaling.
ADAM_FAMILY = (
    "Adam",
    "AdamW",
    "Adamax",
    "NAdam",
    "RAdam",
    "Adagrad",
    "Adadelta",
    "Adafactor",
    "RMSprop",
    "SparseAdam",
    "LAMB",
)


def lr_factor(config: TrainingConfig) -> Callable[[int], float]:
    """The multiplier of the peak LR at each optimizer step.

    Example:
        >>> f = lr_factor(TrainingConfig(warmup_steps=10, schedule="cosine", schedule_steps=110))
        >>> [round(f(s), 3) for s in (0, 9, 10, 60, 110)]
        [0.1, 1.0, 1.0, 0.5, 0.0]
    """
    warmup = config.warmup_steps
    total = config.schedule_steps or 0
    shape = config.schedule

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if shape == "constant" or total <= warmup:
            return 1.0
        done = min(1.0, (step - warmup) / (total - warmup))
        if shape == "cosine":
            return 0.5 * (1 + math.cos(math.pi * done))
        if shape == "linear":
            return 1.0 - done
        # one-cycle: the warm-up is the rise; then a cosine fall to 1/25 of the peak
        return 0.04 + 0.96 * 0.5 * (1 + math.cos(math.pi * done))

    return factor


#: The LR and its schedule: knobs that follow the model and its data, not the machine. The
#: schedule study sets them; the throughput search measures the others (system settings).
LR_KNOBS = ("lr", "lr_scaling", "momentum", "warmup_steps", "schedule", "schedule_steps")


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainingConfig
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """A scheduler for the config's warm-up and decay, or None when the LR stays constant."""
    if not config.scheduled:
        return None
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config))


def hold_after(scheduler: Any, steps: int) -> None:
    """Make ``scheduler`` stop stepping once it has set the LR of the ``steps``-th step (its
    ``last_epoch`` counts from 0): the LR is held at your last step's. For a trial, which
    trains past your own training: OneCycleLR raises when stepped past its ``total_steps``
    (and one step short of that, it has already left its schedule: 4e-7 at your last step,
    then 5e-4), and a cosine stepped past its T_max climbs back to its peak. A scheduler
    without torch's step count (``last_epoch``) is left as it is."""
    if not isinstance(getattr(scheduler, "last_epoch", None), int):
        return
    step = scheduler.step

    def within(*args: Any, **kwargs: Any) -> None:
        if scheduler.last_epoch < steps - 1:
            step(*args, **kwargs)

    scheduler.step = within


def apply_lr(optimizer: torch.optim.Optimizer, lr: float, *, scheduler: object = None) -> list[str]:
    """Set the peak LR; several param groups keep their ratios to the first group, and a
    scheduler made before (its base LRs) follows.

    Returns:
        Notes on what was changed, for the user.
    """
    groups = optimizer.param_groups
    base_lrs = getattr(scheduler, "base_lrs", None)
    if isinstance(base_lrs, list) and base_lrs and base_lrs[0]:
        # The scheduler's base LR is the peak, and its factor for the step at hand (a
        # warm-up's, say) stays: every LR moves by the same ratio.
        first = base_lrs[0]
        ratio = lr / first
        base_lrs[:] = [base * ratio for base in base_lrs]
        for group in groups:
            group["lr"] *= ratio
            group["initial_lr"] = group.get("initial_lr", first) * ratio
    else:
        first = groups[0]["lr"]
        ratio = lr / first if first else 0.0
        for group in groups:
            group["lr"] = lr if not first else group["lr"] * ratio
            group["initial_lr"] = group["lr"]
        if isinstance(base_lrs, list):
            base_lrs[:] = [lr for _ in base_lrs]
    if len(groups) > 1:
        return [
            f"lr {first:g} -> {lr:g} in the first of {len(groups)} param groups; the "
            f"others were scaled by the same {ratio:.3g}x"
        ]
    return [f"lr {first:g} -> {lr:g}"] if lr != first else []


def unpassed_scheduler(optimizer: torch.optim.Optimizer) -> bool:
    """Whether a scheduler was made on ``optimizer`` (torch's ``LRScheduler`` records each
    group's ``initial_lr`` as it is made, HF's ``get_*_schedule_with_warmup`` too): one
    that ``prepare()`` was not given sets the LR from its own copy at each step."""
    return any("initial_lr" in group for group in optimizer.param_groups)


def sets_lr(chosen: TrainingConfig, user: TrainingConfig) -> list[str]:
    """What of ``chosen`` sets the LR of your steps (its LR, its scaling rule for a changed
    batch, a warm-up or decay of its own), as a user reads it; empty when nothing does.

    Example:
        >>> sets_lr(TrainingConfig(batch_size=64, lr_scaling="sqrt"), TrainingConfig())
        ['lr_scaling sqrt for batch 32 -> 64']
        >>> sets_lr(TrainingConfig(lr=0.01, warmup_steps=5), TrainingConfig())
        ['lr 0.01', '5 warm-up steps']
    """
    found = [f"lr {chosen.lr:g}"] if chosen.lr is not None else []
    scaled = chosen.lr_scaling != "none" and chosen.global_batch != user.global_batch
    if chosen.lr is None and scaled:
        found.append(
            f"lr_scaling {chosen.lr_scaling} for batch {user.global_batch} -> {chosen.global_batch}"
        )
    if chosen.warmup_steps:
        found.append(f"{chosen.warmup_steps} warm-up steps")
    if chosen.schedule != "constant":
        found.append(f"a {chosen.schedule} schedule")
    return found


def scaling_rule(optimizer: torch.optim.Optimizer | str) -> tuple[str, str]:
    """The default rule for how the LR follows the batch: ``(rule, why)``.

    Args:
        optimizer: The optimizer or its class name.

    Example:
        >>> scaling_rule("SGD")[0], scaling_rule("AdamW")[0]
        ('linear', 'sqrt')
    """
    name = optimizer if isinstance(optimizer, str) else type(optimizer).__name__
    if name in SGD_FAMILY:
        return "linear", f"{name} is SGD-family: the LR scales with the batch (Goyal et al.)"
    if name in ADAM_FAMILY:
        return "sqrt", f"{name} is adaptive: the LR scales with the square root of the batch"
    return "sqrt", f"{name} is not a known family; the square root is the cautious choice"


def lr_multiplier(rule: str, old_batch: int, new_batch: int) -> float:
    """How much the LR moves when the global batch goes ``old_batch`` -> ``new_batch``.

    Example:
        >>> lr_multiplier("linear", 32, 128), lr_multiplier("sqrt", 32, 128)
        (4.0, 2.0)
    """
    ratio = new_batch / old_batch
    if rule == "linear":
        return ratio
    return math.sqrt(ratio) if rule == "sqrt" else 1.0


def sweep_config(config: TrainingConfig) -> TrainingConfig:
    """A config for an LR range test: its batch and loader, one process, no LR settings
    (the sweep sets the LR of every step itself)."""
    return replace(
        config,
        processes=1,
        strategy="none",
        lr=None,
        lr_scaling="none",
        momentum=None,
        warmup_steps=0,
        schedule="constant",
        schedule_steps=None,
        provenance=Provenance(),
    )


def scale_lr(
    optimizer: torch.optim.Optimizer,
    old_batch: int,
    new_batch: int,
    rule: str,
    *,
    scheduler: object = None,
) -> list[str]:
    """Scale every param group's LR for a global batch going from ``old_batch`` to
    ``new_batch`` by ``rule`` (none, linear or sqrt); a scheduler's base LRs follow.

    Returns:
        Notes on what was changed, for the user (empty when nothing changed).
    """
    if rule == "none" or old_batch == new_batch:
        return []
    ratio = new_batch / old_batch
    factor = lr_multiplier(rule, old_batch, new_batch)
    groups = optimizer.param_groups
    before = [group["lr"] for group in groups]
    for group in groups:
        group["lr"] *= factor
        group["initial_lr"] = group["lr"]
    base_lrs = getattr(scheduler, "base_lrs", None)
    if isinstance(base_lrs, list):  # a scheduler made before prepare() keeps its own copy
        base_lrs[:] = [lr * factor for lr in base_lrs]
    what = (
        f"lr {before[0]:g} -> {groups[0]['lr']:g}"
        if len(groups) == 1
        else f"the lr of each of the {len(groups)} param groups "
        f"({', '.join(f'{lr:g}' for lr in before)}) x{factor:.3g}"
    )
    how = f"x{ratio:.3g}" if rule == "linear" else f"x sqrt({ratio:.3g})"
    return [
        f"{what}: the global batch went {old_batch} -> {new_batch}, scaled by the {rule} "
        f"rule ({how})"
    ]


def momentum_of(optimizer: torch.optim.Optimizer) -> tuple[str, float] | None:
    """``("momentum", value)`` for SGD-style, ``("betas", beta1)`` for Adam-style, or None
    when the optimizer has neither (or SGD without momentum)."""
    group = optimizer.param_groups[0]
    if "betas" in group:
        return "betas", float(group["betas"][0])
    if group.get("momentum"):
        return "momentum", float(group["momentum"])
    return None


def apply_momentum(optimizer: torch.optim.Optimizer, value: float) -> list[str]:
    """Set SGD's momentum or Adam's beta1 in every param group."""
    found = momentum_of(optimizer)
    if found is None:
        return [
            f"momentum {value:g} not applied: {type(optimizer).__name__} has no momentum "
            "or betas (or runs without momentum)"
        ]
    key, old = found
    for group in optimizer.param_groups:
        if key == "betas":
            group["betas"] = (value, *tuple(group["betas"])[1:])
        else:
            group["momentum"] = value
    if value == old:
        return []
    return [f"{'beta1' if key == 'betas' else 'momentum'} {old:g} -> {value:g}"]


@dataclass(frozen=True)
class LrFinding:
    """The result of an LR range test: the curve, the suggestion and how sure it is."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]  # smoothed, bias-corrected
    suggestion: float | None
    confidence: str  # high | low | none
    reason: str

    def __str__(self) -> str:
        if self.suggestion is None:
            return f"no suggestion ({self.reason})"
        return f"lr {self.suggestion:.3g} ({self.confidence} confidence: {self.reason})"


def suggest_lr(lrs: Sequence[float], losses: Sequence[float]) -> tuple[float | None, str, str]:
    """Pick an LR from a range test's smoothed curve: ``(lr, confidence, reason)``.

    Not the steepest point of the whole curve (it often sits just before the blow-up):
    the steepest descent within the band from 100x to 3x below the LR of the lowest loss,
    which is where the loss falls fastest while still far from diverging.
    """
    if len(lrs) < 5:
        return None, "none", f"only {len(lrs)} points before the loss diverged"
    log_lrs = np.log10(np.asarray(lrs))
    values = np.asarray(losses)
    lowest = int(np.argmin(values))
    band = (log_lrs >= log_lrs[lowest] - 2) & (log_lrs <= log_lrs[lowest] - math.log10(3))
    if band.sum() < 3:
        return None, "none", "the loss was lowest at the very start of the sweep; start lower"
    slopes = np.gradient(values, log_lrs)
    candidates = np.where(band)[0]
    steepest = candidates[int(np.argmin(slopes[candidates]))]
    drop = (values[0] - values[lowest]) / max(abs(values[0]), 1e-12)
    still_falling = lowest == len(values) - 1
    confidence = "high" if drop >= 0.1 and slopes[steepest] < 0 and not still_falling else "low"
    reason = (
        f"steepest descent below the loss minimum at lr {lrs[lowest]:.3g}; the loss fell "
        f"{drop:.0%} over the sweep"
        + (
            "; it was still falling at the last step, so the minimum lies higher"
            if still_falling
            else ""
        )
    )
    return float(lrs[steepest]), confidence, reason


class RangeSweep:
    """The range test step by step, in any training loop (an in-process run's, a script's):
    ask ``lr`` for the next step's LR, ``record`` its loss until it says stop, then
    ``finding()``.

    Args:
        min_lr: The first LR.
        max_lr: The last LR.
        steps: Steps in the sweep.
        smoothing: Exponential smoothing of the loss (bias-corrected).
        diverge_factor: Stop when the smoothed loss exceeds this many times its minimum.
    """

    def __init__(
        self,
        *,
        min_lr: float = SWEEP_MIN_LR,
        max_lr: float = SWEEP_MAX_LR,
        steps: int = SWEEP_STEPS,
        smoothing: float = 0.98,
        diverge_factor: float = 4.0,
    ) -> None:
        if not 0 < min_lr < max_lr:
            raise ValueError(f"`0 < min_lr < max_lr` must hold, but got ({min_lr=}, {max_lr=})")
        if steps < 5:
            raise ValueError(f"steps must be >= 5 for a suggestion, got {steps}")
        self.min_lr = min_lr
        self.steps = steps
        self.smoothing = smoothing
        self.diverge_factor = diverge_factor
        self._ratio = (max_lr / min_lr) ** (1 / (steps - 1))
        self.lrs: list[float] = []
        self.losses: list[float] = []  # smoothed
        self.raw: list[float] = []
        self._average = 0.0
        self._best = math.inf
        self.stop = ""

    @property
    def lr(self) -> float:
        """The LR for the next step."""
        return self.min_lr * self._ratio ** len(self.raw)

    def record(self, loss: float) -> bool:
        """Record the loss of a step taken at ``self.lr``; True when the sweep is over."""
        lr, i = self.lr, len(self.raw)
        self.raw.append(loss)
        if not math.isfinite(loss):
            self.stop = f"the loss became {loss} at lr {lr:.3g}"
            return True
        self._average = self.smoothing * self._average + (1 - self.smoothing) * loss
        value = self._average / (1 - self.smoothing ** (i + 1))
        self.lrs.append(lr)
        self.losses.append(value)
        self._best = min(self._best, value)
        if i > 5 and value > self.diverge_factor * self._best:
            self.stop = f"the loss diverged at lr {lr:.3g}"
            return True
        if len(self.raw) >= self.steps:
            self.stop = "reached max_lr"
            return True
        return False

    def finding(self) -> LrFinding:
        """The curve and the suggestion."""
        if self.raw and not math.isfinite(self.raw[0]):
            return LrFinding(
                (),
                (),
                None,
                "none",
                f"the loss was {self.raw[0]} at the very first step (lr {self.min_lr:.3g}): "
                "the model or data gives NaN/inf before any LR matters; check the inputs "
                "for NaN, the loss for log(0), and the initialisation",
            )
        suggestion, confidence, reason = suggest_lr(self.lrs, self.losses)
        stop = self.stop or f"stopped after {len(self.raw)} steps"
        return LrFinding(
            tuple(self.lrs), tuple(self.losses), suggestion, confidence, f"{reason}; {stop}"
        )


@dataclass(frozen=True)
class OptimizerFacts:
    """What the schedule study needs of your optimizer: its class name (the LR scaling
    rule follows it), its LR and its momentum (``("momentum" | "betas", value)``)."""

    name: str
    lr: float
    momentum: tuple[str, float] | None

    @classmethod
    def of(cls, optimizer: torch.optim.Optimizer) -> OptimizerFacts:
        return cls(
            type(optimizer).__name__, float(optimizer.param_groups[0]["lr"]), momentum_of(optimizer)
        )
