"""A candidate's shape: the settings measured at the nearest global batch, moved to its
own, the optimizer steps a run of it holds, and how it is said ('batch 64 (2 processes x
32)', 'cosine, warm-up 20/391 steps')."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from autoaccel.config import TrainingConfig

__all__ = [
    "MIN_RUN_STEPS",
    "at_global",
    "batch_words",
    "horizon_steps",
    "nearest",
    "nearest_log",
    "schedule_words",
    "split_words",
    "step_floor",
    "steps_per_s",
]

# A candidate's run must hold this many optimizer steps of its batch. The HF example's
# study (a 6 s horizon, 4,096 samples) spent 8 of its 25 candidates on batches of 512 to
# 4,096, 4 to 25 steps each, all pruned at the first rung near the untrained loss.
MIN_RUN_STEPS = 50


def step_floor(yours: int) -> int:
    """The optimizer steps a run of another batch must hold to show how it learns, when a
    run of yours holds ``yours``: ``MIN_RUN_STEPS``, or yours where fewer (a slow script's
    own run may hold fewer than 50; a setup with as many steps as yours can tell)."""
    return min(MIN_RUN_STEPS, yours)


def steps_per_s(config: TrainingConfig, rates: dict[int, float]) -> float:
    """Optimizer steps per second at this global batch, from the measured samples/s (of the
    nearest measured global batch when this one was not measured)."""
    nearest = nearest_log(config.global_batch, rates)
    return rates.get(config.global_batch, rates[nearest]) / config.global_batch


def nearest_log(value: int, measured: Any) -> int:
    """The measured batch nearest to ``value`` on a log scale."""
    return min(measured, key=lambda b: abs(math.log(b / value)))


def at_global(settings: dict[int, TrainingConfig], global_batch: int) -> TrainingConfig:
    """The settings measured at the nearest global batch, at ``global_batch``: the same
    processes and accumulation when they divide it (the per-process batch follows), else
    one process."""
    shaped = settings[nearest_log(global_batch, settings)]
    split = shaped.processes * shaped.grad_accum_steps
    if global_batch % split == 0:
        return replace(shaped, batch_size=global_batch // split)
    return replace(
        shaped, batch_size=global_batch, grad_accum_steps=1, processes=1, strategy="none"
    )


def split_words(config: TrainingConfig) -> str:
    """How the global batch is made up: '2 processes x 32', '16 x 4 accumulated'."""
    parts = [f"{config.processes} processes"] if config.processes > 1 else []
    parts.append(f"{config.batch_size}")
    if config.grad_accum_steps > 1:
        parts.append(f"{config.grad_accum_steps} accumulated")
    return " x ".join(parts)


def schedule_words(config: TrainingConfig) -> str:
    """'cosine, warm-up 20/391 steps'; a constant LR with no warm-up is no schedule of
    autoaccel's, so your script's own runs (a Trainer's ``lr_scheduler_type``, linear by
    default in HF's; none in a plain loop: the LR held).

    Example:
        >>> schedule_words(TrainingConfig(schedule="cosine", warmup_steps=20, schedule_steps=391))
        'cosine, warm-up 20/391 steps'
        >>> schedule_words(TrainingConfig(schedule_steps=391))
        "your script's own schedule (none of autoaccel's)"
    """
    if not config.scheduled:
        return "your script's own schedule (none of autoaccel's)"
    return f"{config.schedule}, warm-up {config.warmup_steps}/{config.schedule_steps} steps"


def batch_words(config: TrainingConfig) -> str:
    """'batch 64', or 'batch 64 (2 processes x 32)' when it is split."""
    if config.global_batch == config.batch_size:
        return f"batch {config.batch_size}"
    return f"batch {config.global_batch} ({split_words(config)})"


def horizon_steps(config: TrainingConfig, rates: dict[int, float], seconds: float) -> int:
    """Optimizer steps ``seconds`` of training hold at this batch size."""
    return max(1, int(seconds * steps_per_s(config, rates)))


def nearest(value: float, options: Sequence[Any]) -> Any:
    return min(options, key=lambda o: abs(o - value))
