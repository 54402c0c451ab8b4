"""What the throughput search keeps of each trial and hands on: a trial's record, the
search's result, how a trial is run (``TrialFn``), and one study to one workload."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna

from autoaccel.config import TrainingConfig
from autoaccel.errors import UsageError
from autoaccel.measure import Measurement, PruneBelow

__all__ = ["WORKLOAD_ATTR", "SearchResult", "TrialFn", "TrialRecord", "one_workload", "params_key"]


class TrialFn(Protocol):
    """Runs one trial of ``config`` (in-process or as a script subprocess), stopping it
    early through ``prune`` when it runs clearly slower than the best so far."""

    def __call__(self, config: TrainingConfig, prune: PruneBelow | None = None) -> Measurement: ...


@dataclass(frozen=True)
class TrialRecord:
    """One trial: its knob values, its figures and why it was tried."""

    number: int
    params: dict[str, Any]
    config: TrainingConfig
    measurement: Measurement
    source: str  # baseline | guess | neighbour | sampler | resumed | predicted
    parent: int | None = None  # the trial this one changed one knob of
    changed: str | None = None  # which knob
    elapsed_s: float = 0.0

    @property
    def value(self) -> float:
        return self.measurement.samples_per_s if self.measurement.ok else 0.0


WORKLOAD_ATTR = "workload"  # the study's: which script and model its trials measured


def one_workload(study: optuna.Study, workload: str) -> None:
    """Keep a study to one workload: trials of another script or model are not comparable
    (their samples/s rank and prune nothing here).

    Raises:
        UsageError: the study holds another workload's trials, naming both and the fix.
    """
    held = study.user_attrs.get(WORKLOAD_ATTR)
    if held is None:
        study.set_user_attr(WORKLOAD_ATTR, workload)
    elif held != workload:
        raise UsageError(
            f"study {study.study_name!r} holds the trials of {held}, not of {workload}: their "
            "figures do not compare; give this one another --study (or none: each script "
            "gets its own)"
        )


@dataclass
class SearchResult:
    """Every trial, the best one, and why the search stopped."""

    records: list[TrialRecord]
    baseline: TrialRecord
    best: TrialRecord
    stop_reason: str
    wall_s: float
    study_name: str
    storage: str
    trials_measured: int
    grid_size: int
    failures: dict[str, int] = field(default_factory=dict)  # outcome -> count (OOM, ...)
    pruned: int = 0  # trials stopped early as clearly slower: not failures
    # Setups not measured because the guard could never write them at this budget.
    out_of_reach: int = 0
    shared: bool = False  # the study lives in a database other workers may share
    other_hardware: int = 0  # trials in the study measured on other hardware: not ranked
    by_worker: dict[str, int] = field(default_factory=dict)  # trials each worker measured
    marks: dict[str, str] = field(default_factory=dict)  # what this worker's trials record


def params_key(params: dict[str, Any]) -> str:
    """One string per set of knob values (the keys sorted)."""
    return json.dumps(params, sort_keys=True, default=str)
