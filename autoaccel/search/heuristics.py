"""What limits the current setup, and where the search starts: the diagnosis, the order the
greedy phase changes knobs in, and the heuristic guesses enqueued first.

The thresholds are the profilers' own: data wait >= 5% of the step is worth more workers
(PyTorch profiler's plugin), >= 20% is highly input-bound (TensorFlow's profiler). They are
guesses to measure, not rules: on a 2-core machine a worker often competes with the compute
threads and loses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from autoaccel.config import TrainingConfig
from autoaccel.measure import Measurement
from autoaccel.probe import HardwareProfile
from autoaccel.search.space import SearchSpace
from autoaccel.states import Bound, Precision

__all__ = [
    "INPUT_BOUND",
    "MEMORY_BOUND",
    "Diagnosis",
    "diagnose",
    "guesses",
    "knob_priority",
    "next_batch_guess",
    "speed_only_guess",
]

INPUT_BOUND = 0.20  # data wait >= 20% of the step: highly input-bound (TF profiler's line)
SOME_INPUT_WAIT = 0.05  # >= 5%: worth trying more workers (PyTorch profiler's line)
MEMORY_BOUND = 0.80  # peak >= 80% of the memory budget


@dataclass(frozen=True)
class Diagnosis:
    """What limits the current setup, with the figures and thresholds that say so."""

    bound: Bound
    data_wait_fraction: float
    peak_memory_bytes: int | None
    memory_budget_bytes: int
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.bound}-bound: " + "; ".join(self.reasons)


def diagnose(baseline: Measurement, space: SearchSpace) -> Diagnosis:
    """Input-, compute- or memory-bound, from the baseline's measured figures."""
    wait = baseline.data_wait_fraction
    budget = space.memory.budget_bytes
    peak = baseline.memory_growth_bytes
    reasons = [f"data wait is {wait:.0%} of the step (input-bound at >= {INPUT_BOUND:.0%})"]
    if peak:
        reasons.append(
            f"the step needs {peak / 2**20:,.0f} MiB, {peak / budget:.0%} of the "
            f"{budget / 2**30:.1f} GiB budget (memory-bound at >= {MEMORY_BOUND:.0%})"
        )
    if peak and peak >= MEMORY_BOUND * budget:
        bound = Bound.MEMORY
    elif wait >= INPUT_BOUND:
        bound = Bound.INPUT
    else:
        bound = Bound.COMPUTE
    return Diagnosis(bound, wait, peak, budget, tuple(reasons))


def knob_priority(diagnosis: Diagnosis) -> list[str]:
    """The order in which the greedy phase changes knobs."""
    if diagnosis.bound is Bound.INPUT:
        return [
            "batch_fetch",
            "num_workers",
            "batch_size",
            "num_threads",
            "precision",
            "channels_last",
            "pin_memory",
            "processes",
            "compile",
        ]
    return [
        "batch_size",
        "precision",
        "channels_last",
        "batch_fetch",
        "num_threads",
        "num_workers",
        "processes",
        "pin_memory",
        "compile",
    ]


def guesses(
    space: SearchSpace, user: TrainingConfig, diagnosis: Diagnosis, profile: HardwareProfile
) -> list[TrainingConfig]:
    """Heuristic best guesses to seed the study with (``enqueue_trial``): first your steps
    with the knobs that change the speed only (``speed_only_guess``), so that a fast setup
    that needs no convergence evidence is measured early; where you train at a low
    precision, your batch at 32-true; then your batch in bf16 where bf16 is native here;
    then the next batch size up (``next_batch_guess``), a change the trials' own loss
    curves can clear; then the larger steps. When the space searches the device (a GPU for
    a model left on the CPU), every guess is on the GPU, and the first is your own setup
    moved there."""
    moved = "device" in space.names and space.knob("device").choices[0] != user.device
    if moved:
        user = replace(user, device=space.knob("device").choices[0])
    params = space.params_of(user)
    names = space.names
    first = speed_only_guess(space, user)
    guess = dict(params)
    sizes = _choices(space, "batch_size")
    # Compute-bound: a larger batch amortises per-step overhead (8x, as far as memory allows).
    larger = [b for b in sizes if b <= user.batch_size * 8 and space.memory.fits(b)]
    if larger:
        guess["batch_size"] = max(larger)
    if "num_threads" in names:
        guess["num_threads"] = max(space.knob("num_threads").choices)
    if "channels_last" in names:
        guess["channels_last"] = True
    if "batch_fetch" in names:
        guess["batch_fetch"] = True
    bf16 = fast_low_precision(profile) and Precision.BF16_MIXED in _choices(space, "precision")
    if bf16:
        guess["precision"] = Precision.BF16_MIXED.value
    if "pin_memory" in names:
        guess["pin_memory"] = True
    nearer: list[TrainingConfig] = []  # your steps, or near them: what the curves can check
    if first is not None:
        nearer.append(first)
    start = first if first is not None else user
    full = Precision.FP32.value
    if user.precision != full and full in _choices(space, "precision"):
        # Your batch at full precision: low precision pays only where the matmuls are large
        # enough (a tiny transformer's lose more to autocast's casts than they gain).
        nearer.append(space.config_for({**space.params_of(start), "precision": full}))
    if bf16:
        # Your batch in bf16: a change of precision alone, which the trials' curves check
        # with as many steps as yours; and split over processes.
        start = replace(start, precision=Precision.BF16_MIXED.value)
        split = _ddp_guess(space, space.params_of(start))
        nearer += [start, *([space.config_for(split)] if split else [])]
    step = next_batch_guess(space, start)
    large = space.config_for(guess)
    found = [*nearer, *([step] if step not in (None, large) else []), large]
    if moved:
        found.insert(0, space.config_for(params))
    ddp = _ddp_guess(space, guess)
    if ddp is not None:
        found.append(space.config_for(ddp))
    if diagnosis.bound is Bound.INPUT or diagnosis.data_wait_fraction >= SOME_INPUT_WAIT:
        workers = [w for w in _choices(space, "num_workers") if w > user.num_workers]
        if workers:
            found.append(space.config_for({**guess, "num_workers": min(workers[-1], 4)}))
    return found


def next_batch_guess(space: SearchSpace, start: TrainingConfig) -> TrainingConfig | None:
    """``start`` at the next batch size up (that fits in memory): a step small enough that
    the trials' own loss curves can show it keeping pace with yours, which an 8x larger
    batch seldom does in the second or two a trial trains. None when there is none."""
    larger = [b for b in _choices(space, "batch_size") if b > start.batch_size]
    if not larger or not space.memory.fits(larger[0]):
        return None
    return space.config_for({**space.params_of(start), "batch_size": larger[0]})


def fast_low_precision(profile: HardwareProfile) -> bool:
    """Whether bf16 runs natively here: a GPU, or a CPU with avx512_bf16 or amx_bf16."""
    return profile.device_type == "cuda" or bool(
        {"avx512_bf16", "amx_bf16"} & set(profile.cpu.flags)
    )


SPEED_ONLY_GUESS = {
    "num_threads": max,
    "channels_last": True,
    "batch_fetch": True,
    "pin_memory": True,
    "cudnn_benchmark": True,
    "optimizer_impl": lambda choices: "fused" if "fused" in choices else choices[-1],
}


def speed_only_guess(space: SearchSpace, user: TrainingConfig) -> TrainingConfig | None:
    """Your batch, split, precision and accumulation, with every knob that changes the
    speed only set to its usual best (all the threads, channels-last, batches fetched by
    index, pinned memory, cuDNN's autotuner, the fused optimizer) where the space searches
    it; None when that is your setup."""
    params = space.params_of(user)
    guess = dict(params)
    for name, best in SPEED_ONLY_GUESS.items():
        if name in space.names:
            guess[name] = best(space.knob(name).choices) if callable(best) else best
    return None if guess == params else space.config_for(guess)


def _choices(space: SearchSpace, name: str) -> tuple[Any, ...]:
    """The values the space tries for ``name``; none where it is not searched (your script
    pins it, or it does not apply here)."""
    return tuple(space.knob(name).choices) if name in space.names else ()


def _ddp_guess(space: SearchSpace, guess: dict[str, object]) -> dict[str, object] | None:
    """The guess over two processes (DDP) at the same global batch: each process half the
    batch and its share of the cores. None when the space searches no processes or the
    batch does not halve."""
    if "processes" not in space.names:
        return None
    counts = [p for p in space.knob("processes").choices if p > 1]
    batch = guess.get("batch_size")
    if not counts or not isinstance(batch, int) or batch % counts[0]:
        return None
    if batch // counts[0] not in _choices(space, "batch_size"):
        return None
    return {**guess, "processes": counts[0], "batch_size": batch // counts[0]}
