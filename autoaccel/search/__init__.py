"""The throughput search: the knobs that apply here (``space``), where to start
(``heuristics``) and the Optuna study that measures its way to the fastest (``study``;
what it keeps of each trial: ``records``)."""

from __future__ import annotations

from autoaccel.search.heuristics import Diagnosis, diagnose, guesses, knob_priority
from autoaccel.search.records import SearchResult, TrialFn, TrialRecord
from autoaccel.search.space import (
    Knob,
    MemoryModel,
    SearchSpace,
    WorkloadFacts,
    build_space,
    powers_of_two,
)
from autoaccel.search.study import (
    DEFAULT_STORAGE,
    PRUNE_BELOW,
    Search,
    check_storage,
    record_end_phase,
    storage_url,
)

__all__ = [
    "DEFAULT_STORAGE",
    "PRUNE_BELOW",
    "Diagnosis",
    "Knob",
    "MemoryModel",
    "Search",
    "SearchResult",
    "SearchSpace",
    "TrialFn",
    "TrialRecord",
    "WorkloadFacts",
    "build_space",
    "check_storage",
    "diagnose",
    "guesses",
    "knob_priority",
    "powers_of_two",
    "record_end_phase",
    "storage_url",
]
