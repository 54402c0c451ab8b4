"""How ``autoaccel tune`` and a training script talk during a trial.

The tuner writes a ``TrialSpec`` as JSON and starts the script with ``AUTOACCEL_TRIAL``
pointing at it. ``prepare()`` in the script reads it, touches ``started_path`` (so the tuner
knows the script reached ``prepare()``), applies the trial's config, measures, and writes a
``TrialReport`` to ``report_path`` before leaving through ``TrialFinished``. Both files are
written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoaccel.atomic import atomic_write_text
from autoaccel.config import TrainingConfig
from autoaccel.errors import UsageError
from autoaccel.measure import Measurement, MeterSettings

__all__ = [
    "TRIAL_ENV",
    "CurveSpec",
    "TrialFinished",
    "TrialReport",
    "TrialSpec",
    "in_trial",
    "read_trial_spec",
]

#: Set by the tuner in a trial's environment; its value is the spec file's path.
TRIAL_ENV = "AUTOACCEL_TRIAL"


class TrialFinished(SystemExit):
    """Ends a trial after its result is written.

    A ``SystemExit`` (exit code 0), so the script's own ``except Exception`` blocks cannot
    swallow it, while its ``finally`` blocks still run.
    """

    def __init__(self) -> None:
        super().__init__(0)


@dataclass(frozen=True)
class CurveSpec:
    """A loss-curve run: train for ``seconds`` of training time, scored as ``scoring``
    (``Scoring.to_dict()``) says; each point is appended to ``points_path`` as it is
    scored (one JSON list per line), so the tuner can prune the run while it trains.
    ``seed``: reseed torch before the first batch (another data order); None keeps the
    script's own."""

    seconds: float
    scoring: dict[str, Any]
    points_path: str
    seed: int | None = None


@dataclass(frozen=True)
class TrialSpec:
    """What one trial should run and where its answer goes."""

    config: dict[str, Any]  # the knobs (ignored for the baseline)
    baseline: bool  # run the script's own settings, only measure
    settings: dict[str, Any]  # MeterSettings fields
    started_path: str
    report_path: str
    prune_below_samples_per_s: float = 0.0  # stop early under this (0 = never)
    lr_sweep: dict[str, Any] | None = None  # RangeSweep arguments: an LR range test, not a trial
    curve: dict[str, Any] | None = None  # a loss curve, not a trial (``CurveSpec``'s fields)
    metric: str | None = None  # the entry of the evaluate hook's dict to score as the metric

    def curve_spec(self) -> CurveSpec | None:
        return CurveSpec(**self.curve) if self.curve is not None else None

    def trial_config(self) -> TrainingConfig:
        return TrainingConfig.from_dict(self.config)

    def meter_settings(self) -> MeterSettings:
        return MeterSettings(**self.settings)

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(dataclasses.asdict(self), indent=2))


@dataclass(frozen=True)
class TrialReport:
    """What the script measured, and the facts about it the search space needs."""

    measurement: dict[str, Any]
    user_config: dict[str, Any]  # the script's own settings (the baseline's config)
    parameter_count: int
    dataset_size: int | None  # None when the script batches by itself
    conv_model: bool
    tensor_data: bool
    device: str
    world_size: int = 1
    notes: list[str] = field(default_factory=list)
    optimizer: str = ""  # the optimizer's class name (it picks the LR scaling rule)
    lr_curve: dict[str, Any] | None = None  # an LR range test's lrs, raw losses and stop
    model_fingerprint: str | None = None  # the script's model (``model_fingerprint``)
    optimizer_lr: float | None = None  # its LR as the script set it
    optimizer_momentum: list[Any] | None = None  # ("momentum" | "betas", value), or None
    has_hook: bool = False  # the script passed prepare() an evaluate hook
    hook_name: str | None = None  # what it is called: "validation_step" in a Lightning script
    held_out_start: list[float | None] | None = None  # the hook on the untrained model
    hook_error: str | None = None  # what went wrong calling the hook on the untrained model
    curve: list[list[float | None]] | None = None  # [seconds, step, loss, metric] per point
    fixed: dict[str, str] | None = None  # knobs the script pins, with why (not searched)
    own_samples: int | None = None  # what your own training takes (a Trainer's epochs/steps)
    unpassed_scheduler: bool = False  # a scheduler made on the optimizer, not given prepare()

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(dataclasses.asdict(self), indent=2, default=str))

    @classmethod
    def read(cls, path: Path) -> TrialReport:
        return cls(**json.loads(path.read_text()))

    def to_measurement(self) -> Measurement:
        return Measurement.from_dict(self.measurement)


def in_trial() -> bool:
    """Whether this process runs as a tuner's trial (guard checkpoints and logging with it).

    Example:
        >>> import autoaccel
        >>> if not autoaccel.in_trial():      # doctest: +SKIP
        ...     torch.save(model.state_dict(), "checkpoint.pt")
    """
    return bool(os.environ.get(TRIAL_ENV))


def read_trial_spec() -> TrialSpec | None:
    """The current trial's spec, or None in a normal run.

    Raises:
        UsageError: ``$AUTOACCEL_TRIAL`` is set but names no trial spec (left in a shell).
    """
    path = os.environ.get(TRIAL_ENV)
    if not path:
        return None
    try:
        return TrialSpec(**json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError):
        raise UsageError(
            f"${TRIAL_ENV} is set ({path[:60]!r}) but names no trial spec; `autoaccel tune` "
            f"sets it for its trials only: unset it (`unset {TRIAL_ENV}`) to train normally"
        ) from None
