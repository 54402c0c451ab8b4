"""Learning-rate schedules from a config: warm-up, then constant, cosine, linear or one-cycle.

``build_scheduler`` returns a ``LambdaLR`` stepped once per optimizer step (``Run.step()``
steps it only when the optimizer steps, so gradient accumulation is handled).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from autoaccel.config import TrainingConfig

__all__ = ["apply_lr", "build_scheduler", "lr_factor"]


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


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainingConfig
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """A scheduler for the config's warm-up and decay, or None when the LR stays constant."""
    if config.schedule == "constant" and config.warmup_steps == 0:
        return None
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config))


def apply_lr(optimizer: torch.optim.Optimizer, lr: float) -> list[str]:
    """Set the peak LR; several param groups keep their ratios to the first group.

    Returns:
        Notes on what was changed, for the user.
    """
    groups = optimizer.param_groups
    first = groups[0]["lr"]
    ratio = lr / first if first else 0.0
    for group in groups:
        group["lr"] = lr if not first else group["lr"] * ratio
        group["initial_lr"] = group["lr"]
    if len(groups) > 1:
        return [
            f"lr {first:g} -> {lr:g} in the first of {len(groups)} param groups; the "
            f"others were scaled by the same {ratio:.3g}x"
        ]
    return [f"lr {first:g} -> {lr:g}"]
