"""Learning-rate schedules from a config: warm-up, then constant, cosine, linear or one-cycle.

``build_scheduler`` returns a ``LambdaLR`` stepped once per optimizer step (``Run.step()``
steps it only when the optimizer steps, so gradient accumulation is handled).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from autoaccel.config import TrainingConfig

__all__ = [
    "LrFinding",
    "apply_lr",
    "build_scheduler",
    "lr_factor",
    "lr_range_test",
    "suggest_lr",
]


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
    confidence = "high" if drop >= 0.1 and slopes[steepest] < 0 else "low"
    reason = (
        f"steepest descent below the loss minimum at lr {lrs[lowest]:.3g}; the loss fell "
        f"{drop:.0%} over the sweep"
    )
    return float(lrs[steepest]), confidence, reason


def lr_range_test(
    step: Callable[[float], float],
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    smoothing: float = 0.98,
    diverge_factor: float = 4.0,
) -> LrFinding:
    """Smith's LR range test: raise the LR exponentially, stop when the loss diverges.

    Args:
        step: Trains one step at the given LR and returns its loss (the caller sets the LR
            on its optimizer and restores the model afterwards).
        min_lr: The first LR.
        max_lr: The last LR.
        steps: Steps in the sweep.
        smoothing: Exponential smoothing of the loss (bias-corrected).
        diverge_factor: Stop when the smoothed loss exceeds this many times its minimum.
    """
    if not 0 < min_lr < max_lr:
        raise ValueError(f"`0 < min_lr < max_lr` must hold, but got ({min_lr=}, {max_lr=})")
    ratio = (max_lr / min_lr) ** (1 / max(steps - 1, 1))
    lrs: list[float] = []
    smoothed: list[float] = []
    average, best = 0.0, math.inf
    stop = "reached max_lr"
    for i in range(steps):
        lr = min_lr * ratio**i
        loss = step(lr)
        if not math.isfinite(loss):
            stop = f"the loss became {loss} at lr {lr:.3g}"
            break
        average = smoothing * average + (1 - smoothing) * loss
        value = average / (1 - smoothing ** (i + 1))
        lrs.append(lr)
        smoothed.append(value)
        best = min(best, value)
        if i > 5 and value > diverge_factor * best:
            stop = f"the loss diverged at lr {lr:.3g}"
            break
    suggestion, confidence, reason = suggest_lr(lrs, smoothed)
    return LrFinding(tuple(lrs), tuple(smoothed), suggestion, confidence, f"{reason}; {stop}")
