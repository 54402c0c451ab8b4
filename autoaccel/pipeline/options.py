"""What the user asked of a tuning run (``PipelineOptions``, made once by
``PipelineOptions.checked`` with the objective's rules and the budget's first check), how
each front end spells and defaults it (``FrontEnd``), and what the front end measured before
the pipeline (``Job``)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autoaccel.budget import (
    ADVISE_BUDGET_S,
    DEFAULT_MAX_TRIALS,
    THROUGHPUT_SHARE,
    TRIAL_TIMEOUT_S,
    TUNE_BUDGET_S,
    TUNE_TTL_BUDGET_S,
)
from autoaccel.config import TrainingConfig
from autoaccel.confirm import CONFIRM_PAIRS
from autoaccel.errors import UsageError
from autoaccel.measure import Measurement, MeterSettings
from autoaccel.probe import HardwareProfile
from autoaccel.runtime.device import DeviceChoice, choose_device
from autoaccel.search import SearchSpace, TrialFn, WorkloadFacts
from autoaccel.states import Objective
from autoaccel.time_to_loss import Trainer

__all__ = [
    "ADVISE",
    "MIN_TRIALS",
    "TUNE",
    "FrontEnd",
    "Job",
    "PipelineOptions",
    "check_budget",
    "study_name_for",
    "throughput_share",
]

MIN_TRIALS = 4  # the least a run measures: baseline, one candidate, one confirmation pair
Metric = str | Callable[[Any, Any], Any] | None  # a hook's dict entry (tune) or a function


@dataclass(frozen=True)
class FrontEnd:
    """How a front end names its arguments in messages, and its defaults."""

    name: str  # the prefix of derived study names
    cli: bool  # arguments are flags (``--target``), else keywords (``target=``)
    start_s: float  # one trial's fixed cost: a fresh interpreter importing torch (a
    # script's), or an in-process trial's set-up
    budget_s: float  # default budget for the throughput objective
    ttl_budget_s: float  # ... and for time-to-loss
    include_parallel: bool  # DDP over several processes (script trials only)

    def spell(self, name: str, value: object = None) -> str:
        """``--name value`` or ``name=value`` (without a value: ``--name`` or ``name=``)."""
        if self.cli:
            flag = "--" + name.replace("_", "-")
            return flag if value is None else f"{flag} {value}"
        return f"{name}=" if value is None else f"{name}={value!r}"


TUNE = FrontEnd("tune", True, 4.0, TUNE_BUDGET_S, TUNE_TTL_BUDGET_S, include_parallel=True)
ADVISE = FrontEnd("advise", False, 0.5, ADVISE_BUDGET_S, 3 * ADVISE_BUDGET_S, False)


@dataclass(frozen=True)
class PipelineOptions:
    """What the user asked of a tuning run, gathered once by either front end (with
    ``checked``); every default is here, or in ``autoaccel.budget`` for the CLI's help."""

    budget_s: float = TUNE_BUDGET_S
    max_trials: int = DEFAULT_MAX_TRIALS
    objective: Objective = Objective.THROUGHPUT
    target: float | None = None  # time-to-loss: the held-out loss, or metric's value, to reach
    metric: Metric = None  # what target is a value of; None: the held-out loss
    keep_global_batch: bool = False
    storage: str | None = None  # Optuna storage URL or SQLite path
    study_name: str | None = None  # default: derived from the workload, so a rerun resumes
    seed: int | None = None
    include_compile: bool = False
    include_parallel: bool = False  # DDP over several processes (script trials only)
    settings: MeterSettings = field(default_factory=MeterSettings)
    confirm_pairs: int = CONFIRM_PAIRS
    horizon_s: float | None = None  # time-to-loss: your setup's training time
    trial_timeout_s: float = TRIAL_TIMEOUT_S  # a script's trial is killed after this long
    lr_find: bool = False  # after the search, an LR range test sets the lr (tune)
    command: str = ""  # how the user started this, for the config's provenance
    script: str | None = None  # the training script's file name, when tuning one
    prefix: str = "advise"  # of derived study names: advise | tune

    @property
    def hook_metric(self) -> str | None:
        """The metric as the name of an entry of a script's evaluate hook; None for the
        held-out loss, or for advise()'s metric function."""
        return self.metric if isinstance(self.metric, str) else None

    @classmethod
    def checked(
        cls,
        front: FrontEnd,
        *,
        objective: str | None = None,
        default_objective: Objective = Objective.THROUGHPUT,
        budget_s: Any = None,
        **fields: Any,
    ) -> PipelineOptions:
        """The options, with the objective's rules and the budget checked before any work.

        Args:
            front: Which front end asks, for its spelling and defaults.
            objective: As the user spelled it; None: ``default_objective``.
            budget_s: None: the front end's default for the objective.
            fields: The other fields, as the user gave them.

        Raises:
            UsageError: an unknown objective; a metric without a target, a target with
                the throughput objective or not a finite number; ``lr_find`` with
                time-to-loss; a budget that is not a number or too small for the least a
                run measures (naming the smallest that works); ``max_trials`` < 1.
        """
        objective_ = _objective(front, objective or default_objective.value, fields)
        if budget_s is None:
            ttl = objective_ is Objective.TIME_TO_LOSS
            budget_s = front.ttl_budget_s if ttl else front.budget_s
        options = cls(
            budget_s=budget_s,
            objective=objective_,
            prefix=front.name,
            include_parallel=front.include_parallel,
            **fields,
        )
        check_budget(
            budget_s,
            options.max_trials,
            options.settings,
            start_s=front.start_s,
            share=throughput_share(objective_),
        )
        return options


def _objective(front: FrontEnd, objective: str, fields: dict[str, Any]) -> Objective:
    """The objective asked for, checked with the goal's arguments (``checked``)."""
    target, metric = fields.get("target"), fields.get("metric")
    spell = front.spell
    if objective not in Objective.spellings():
        named = spell("objective") if front.cli else "objective"
        raise UsageError(
            f"{named} must be one of {', '.join(Objective.spellings())}, got {objective!r}"
        )
    ttl = spell("objective", Objective.TIME_TO_LOSS.value)
    if metric is not None and target is None:
        example = "--target 0.95 --metric accuracy" if front.cli else "target=0.95 for 95% accuracy"
        given = spell("metric", metric) if front.cli else spell("metric")
        raise UsageError(f"{given} needs {spell('target')}, the value to reach (e.g. {example})")
    if target is not None and objective != Objective.TIME_TO_LOSS:
        how = f"add {ttl}" if front.cli else f"give val_data, or {ttl}"
        raise UsageError(
            f"{spell('target')} is for {ttl} (the throughput objective has no quality to "
            f"reach); {how}"
        )
    if target is not None and (
        isinstance(target, bool)
        or not isinstance(target, (int, float))
        or not math.isfinite(target)
    ):
        raise UsageError(f"{spell('target')} must be a finite number, got {target!r}")
    if fields.get("lr_find") and objective == Objective.TIME_TO_LOSS:
        raise UsageError(
            f"{spell('lr_find')} is part of {ttl} (its range test centres the LR search, "
            f"and the study picks the LR); drop {spell('lr_find')}"
        )
    return Objective(objective)


def throughput_share(objective: Objective) -> float:
    """The part of a budget the throughput search may use (time-to-loss keeps the rest for
    the schedule study)."""
    return THROUGHPUT_SHARE if objective is Objective.TIME_TO_LOSS else 1.0


@dataclass(frozen=True)
class Job:
    """What a front end measured before the pipeline: the baseline and the facts."""

    measure: TrialFn
    user: TrainingConfig  # the caller's own setup
    baseline: Measurement
    facts: WorkloadFacts
    profile: HardwareProfile
    trial_s: float | None = None  # one trial's wall time, as the baseline's took; None: estimate
    model: str | None = None  # the model's fingerprint (``model_fingerprint``)
    trainer: Trainer | None = None  # draws loss curves: the guard's check runs, the schedule

    @property
    def start_s(self) -> float:
        """A run's start-up here: the baseline's wall time less what it measured (a
        script's interpreter, torch and its own set-up), at least the front end's estimate."""
        measured = (self.trial_s or 0.0) - self.baseline.warmup_s - self.baseline.window_s
        return max(self.facts.start_s, measured)

    @property
    def own_training_s(self) -> float | None:
        """Your script's own training (``facts.own_samples``) at your baseline's samples/s,
        when the script says how long it trains."""
        rate, samples = self.baseline.samples_per_s, self.facts.own_samples
        return samples / rate if samples and rate > 0 else None

    @property
    def device(self) -> DeviceChoice:
        """Where the search's trials train (``autoaccel.runtime.device``, ``auto``): a GPU
        when torch can use one and the script left the model on the CPU, else where the
        model is. The baseline stays your own setup, on your model's device."""
        return choose_device("auto", self.facts.device, cuda_count=self.profile.usable_gpus)

    def device_notes(self) -> list[str]:
        """Where the trials trained and why, when a GPU is in play (a model your code placed
        on one is kept, and you are told; one left on the CPU is tried there)."""
        choice = self.device
        if choice.device.type == "cpu" and not choice.moved:
            return []
        return [f"trials on {choice.device}: {choice.reason}"]

    @property
    def one_trial_s(self) -> float:
        """One trial's wall time: the baseline's, at least its warm-up, window and start-up.

        In-process (no measured wall time), the baseline's first step counts as an ordinary
        one: what it took beyond that (the process's first kernels, a CUDA context, cuDNN's
        autotuning) is paid once per process, not by each later trial, so it does not size
        the later phases. A script's trial is a new process that pays it every time.
        """
        b = self.baseline
        warmup_s = b.warmup_s
        if self.trial_s is None:
            warmup_s -= max(0.0, b.first_step_s - b.step_time_s)
        return max(self.trial_s or 0.0, warmup_s + b.window_s + self.facts.start_s)


def check_budget(
    budget_s: Any,
    max_trials: int,
    settings: MeterSettings,
    *,
    start_s: float,
    share: float = 1.0,
) -> None:
    """Refuse a budget too small for the least a run measures, before any work: the
    baseline, one candidate and one confirmation pair (``MIN_TRIALS``), each costing at
    least the measuring window and ``start_s`` (the script's interpreter, or an in-process
    trial's set-up).

    Args:
        share: The part of the budget the throughput pipeline gets (time-to-loss keeps the
            rest for the schedule study); the message still quotes the whole budget.

    Raises:
        UsageError: a budget that is not a positive, finite number of seconds, or one too
            small, naming the smallest that can work.
    """
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)):
        raise UsageError(
            f"budget_s must be a number of seconds, got {type(budget_s).__name__} {budget_s!r}"
        )
    if not math.isfinite(budget_s) or budget_s <= 0:
        raise UsageError(f"budget_s must be a positive, finite number of seconds, got {budget_s!r}")
    trial_s = start_s + settings.window_s
    minimum_s = math.ceil(MIN_TRIALS * trial_s / share)
    if budget_s < minimum_s:
        parts = "" if share == 1 else ", and the schedule study as much again"
        raise UsageError(
            f"a budget of {budget_s:g} s is too small: the baseline, one candidate and one "
            f"confirmation pair take about {MIN_TRIALS * trial_s:.0f} s here ({trial_s:.1f} s "
            f"per trial{parts}); give at least {minimum_s} s (--budget {minimum_s}s, or "
            f"budget_s={minimum_s})"
        )
    if max_trials < 1:
        raise UsageError(f"max_trials must be >= 1, got {max_trials}")


def study_name_for(
    facts: WorkloadFacts, space: SearchSpace, profile: HardwareProfile, options: PipelineOptions
) -> str:
    """A study name derived from the workload, the space and the machine: same call, same
    study, so a rerun resumes; a changed space gets a new study."""
    key = repr((facts, space.identity(), profile.fingerprint(), options.settings))
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{options.prefix}-{facts.model_name}-{digest}"
