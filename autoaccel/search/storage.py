"""What a study keeps in its storage, and where that storage is.

- ``storage_url`` / ``check_storage``: the URL (SQLite under ``.autoaccel/`` by default, or
  any Optuna storage URL), opened once before any trial so a bad one is found at once;
- each trial's attributes: the measurement in full (read back to resume) and its headline
  figures flat (optuna-dashboard sorts and filters by them);
- ``record_end_phase``: how the end of a search decided (the final round's and the
  confirmation's measurements, and the pick), for the dashboard.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage

from autoaccel.atomic import try_write
from autoaccel.errors import UsageError
from autoaccel.measure import Measurement
from autoaccel.redact import mask_url
from autoaccel.search.shared import open_storage
from autoaccel.search.space import SearchSpace

__all__ = [
    "DEFAULT_STORAGE",
    "OBJECTIVE_NAME",
    "check_storage",
    "feasibility",
    "flat_attrs",
    "measurement_attrs",
    "record_end_phase",
    "storage_url",
]

DEFAULT_STORAGE = Path(".autoaccel") / "studies.db"

#: The study's objective, as optuna-dashboard and ``study.metric_names`` show it.
OBJECTIVE_NAME = "samples_per_s"


def storage_url(storage: str | None) -> str:
    """An Optuna storage URL; the default is SQLite in ``.autoaccel/studies.db``."""
    if storage:
        if "://" in storage:
            return storage
        path = Path(storage)
    else:
        path = DEFAULT_STORAGE
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def check_storage(storage: str | None) -> str:
    """Open the study storage once, before any trial, so a bad one is found at once.

    Returns:
        Its URL.

    Raises:
        UsageError: an unknown scheme, a missing driver, a database that cannot be reached,
            or an SQLite file that cannot be written; the URL's password masked.
    """
    shown = mask_url(storage or str(DEFAULT_STORAGE))
    try:
        url = storage_url(storage)
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            if path.is_dir():
                raise IsADirectoryError(f"{path} is a directory")
            if path.is_symlink() and not path.exists():
                # the words first: a long path is cut at the message's end
                raise FileNotFoundError(f"a link to a missing file: {path} -> {os.readlink(path)}")
            try_write(path.parent)
            if not path.exists():  # the study creates it; a failed baseline leaves none
                return url
            if not os.access(path, os.W_OK):
                raise PermissionError(f"{path} cannot be written")
        opened = open_storage(url)  # retries the schema's creation a racing worker began
        (opened if isinstance(opened, RDBStorage) else RDBStorage(url)).remove_session()
    except Exception as error:  # SQLAlchemy, a driver or the OS: all mean "cannot use it"
        reason = mask_url(str(error).strip().splitlines()[0] if str(error).strip() else "")
        raise UsageError(
            f"--storage {shown} cannot be used ({type(error).__name__}: {reason[:200]}); give "
            "a writable SQLite path (e.g. .autoaccel/studies.db) or a reachable database URL "
            "(e.g. postgresql://user:password@host/db)"
        ) from None
    return url


def flat_attrs(m: Measurement) -> dict[str, Any]:
    """The measurement's headline figures as flat scalar attributes (the dashboard sorts
    and filters by these; the nested ``measurement`` attribute is for resuming)."""
    return {
        "outcome": m.outcome.value,
        OBJECTIVE_NAME: round(m.samples_per_s, 1),
        "data_wait_fraction": round(m.data_wait_fraction, 3),
        "step_ms": round(1000 * m.step_time_s, 2),
        "memory_growth_mib": round((m.memory_growth_bytes or 0) / 2**20, 1),
        "message": m.message[:200],
    }


def feasibility(m: Measurement) -> dict[str, float]:
    """The trial's constraint (Optuna's ``Trial.set_constraint``): violated (1.0) when the
    measurement failed, so TPE steers away; every measured trial has it, so Optuna's plots
    and the dashboard call none "infeasible" for lack of one."""
    return {"feasible": 0.0 if m.ok else 1.0}


def measurement_attrs(m: Measurement) -> dict[str, Any]:
    """The measurement as the study keeps it to resume: its loss curve compacted (the
    guard compares a resumed trial's curve as it would the whole one)."""
    data = m.compacted().to_dict()
    data.pop("data_wait_fraction")
    return data


def record_end_phase(
    storage: str | None,
    study_name: str,
    space: SearchSpace,
    entries: Sequence[tuple[dict[str, Any], Measurement, str]],
    pick: dict[str, Any],
    finalists: Sequence[tuple[dict[str, Any], list[float]]],
    marks: dict[str, str] | None = None,
) -> str:
    """Record how the end of a search decided, in the storage the dashboard reads.

    In the study, the final round's and the confirmation's measurements become trials, each
    with its ``source``, and ``autoaccel_pick`` names the config written. A second study,
    ``<study>-final-<time>``, holds one trial per finalist valued by the median of its
    measurements: the rule that picked the winner, so that study's best trial is the config
    written (the search study's best is its highest single measurement, which can be luck).

    Args:
        storage: The storage as the user gave it (``storage_url`` makes it a URL).
        entries: (searched params, measurement, source) for each end-phase measurement.
        pick: The params of the config written, with the confirmed speedup.
        finalists: Each finalist's params and the samples/s the final round judged it on.
        marks: What each trial records of the worker and hardware (``Search.marks``).

    Returns:
        The final study's name.
    """
    url = storage_url(storage)
    study = optuna.load_study(study_name=study_name, storage=url)
    distributions = space.distributions()
    for params, measurement, source in entries:
        attrs = {
            "measurement": measurement_attrs(measurement),
            **flat_attrs(measurement),
            "source": source,
            **(marks or {}),
        }
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=distributions,
                value=measurement.samples_per_s if measurement.ok else 0.0,
                user_attrs=attrs,
                constraints=feasibility(measurement),
            )
        )
    final_name = f"{study_name}-final-{time.strftime('%Y%m%d-%H%M%S')}"
    final = optuna.create_study(
        study_name=final_name, storage=url, direction="maximize", load_if_exists=True
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        final.set_metric_names([f"{OBJECTIVE_NAME}_median"])
    for params, rates in finalists:
        final.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=distributions,
                value=statistics.median(rates),
                user_attrs={"samples_per_s_measured": rates, "source": "final round"},
            )
        )
    study.set_user_attr("autoaccel_pick", {**pick, "final_study": final_name})
    final.set_user_attr("autoaccel_pick", pick)
    return final_name
