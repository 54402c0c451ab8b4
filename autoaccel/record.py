"""The run record: everything a tuning run measured, in one ``summary.json``.

Both ``autoaccel tune`` and ``advise()`` write it at the end. ``autoaccel report`` turns it
into an HTML page (``autoaccel.report``). The record holds:
- the advice (``Advice.to_dict``, the same as ``--json`` prints);
- the hardware;
- every trial: its knobs, outcome, throughput, and step time split into data wait and
  compute;
- Optuna's parameter importances;
- the LR range test's curve, when one ran.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoaccel.atomic import atomic_write_text
from autoaccel.config import now_iso

if TYPE_CHECKING:
    from autoaccel.advice import Advice
    from autoaccel.schedule import LrFinding

__all__ = ["RECORD_NAME", "json_ready", "lr_find_record", "run_record", "write_record"]

RECORD_NAME = "summary.json"
RECORD_VERSION = 1


def json_ready(value: Any) -> Any:
    """``value`` with NaN and infinities as null (JSON has no spelling for them).

    Example:
        >>> json_ready({"a": float("nan"), "b": [1.5, float("inf")]})
        {'a': None, 'b': [1.5, None]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def run_record(
    advice: Advice,
    *,
    kind: str,
    command: str,
    storage: str | None,
    config_path: str | None = None,
    lr_finding: LrFinding | None = None,
) -> dict[str, Any]:
    """The record of one run, ready for JSON.

    Args:
        kind: ``"tune"`` or ``"advise"``.
        storage: The study's storage as the user gave it, for the parameter importances.
    """
    trials = [
        {
            "number": r.number,
            "source": r.source,
            "params": r.params,
            "outcome": r.measurement.outcome.value,
            "samples_per_s": r.measurement.samples_per_s,
            "step_time_s": r.measurement.step_time_s,
            "data_wait_s": r.measurement.data_wait_s,
            "compute_s": r.measurement.compute_s,
            "peak_memory_bytes": r.measurement.peak_memory_bytes,
            "elapsed_s": r.elapsed_s,
            "message": r.measurement.message,
        }
        for r in advice.search.records
    ]
    record = {
        "record_version": RECORD_VERSION,
        "kind": kind,
        "created_at": now_iso(),
        "command": command,
        "config_path": config_path,
        "hardware": {"describe": advice.profile.describe(), **advice.profile.to_dict()},
        **advice.to_dict(),
        "speedup_pairs": {
            "baseline_samples_per_s": list(advice.speedup.baseline_samples_per_s),
            "tuned_samples_per_s": list(advice.speedup.best_samples_per_s),
        },
        "trials": trials,
        "importances": _importances(advice.search.study_name, storage),
        "lr_range_test": _lr_curve(lr_finding),
    }
    return json_ready(record)


def lr_find_record(
    finding: LrFinding,
    *,
    command: str,
    script: str,
    batch_size: int,
    config_path: str | None,
    raw_losses: list[float],
) -> dict[str, Any]:
    """The record of one ``autoaccel lr-find`` run, which ``autoaccel report`` draws: the
    curve, the suggestion and why, the batch size it ran at.

    Example:
        >>> from autoaccel.schedule import LrFinding
        >>> found = LrFinding([1e-3, 1e-2], [2.0, 1.5], 1e-2, "low", "steepest fall")
        >>> r = lr_find_record(found, command="autoaccel lr-find t.py", script="t.py",
        ...                    batch_size=32, config_path=None, raw_losses=[2.1, 1.4])
        >>> r["kind"], r["lr_range_test"]["suggestion"], r["batch_size"]
        ('lr-find', 0.01, 32)
    """
    return json_ready(
        {
            "record_version": RECORD_VERSION,
            "kind": "lr-find",
            "created_at": now_iso(),
            "command": command,
            "script": script,
            "batch_size": batch_size,
            "config_path": config_path,
            "raw_losses": raw_losses,
            "lr_range_test": _lr_curve(finding),
        }
    )


def write_record(record: dict[str, Any], folder: Path) -> Path:
    """Write ``record`` as ``folder/summary.json``, atomically; returns its path."""
    path = folder / RECORD_NAME
    atomic_write_text(path, json.dumps(record, indent=1, default=str) + "\n")
    return path


def _importances(study_name: str, storage: str | None) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA) over the study; empty when there are too
    few trials or knobs to tell."""
    import optuna

    from autoaccel.search import storage_url

    try:
        study = optuna.load_study(study_name=study_name, storage=storage_url(storage))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, KeyError, ZeroDivisionError):
        return {}
    return {name: round(float(value), 4) for name, value in found.items()}


def _lr_curve(finding: LrFinding | None) -> dict[str, Any] | None:
    if finding is None:
        return None
    return {
        "lrs": list(finding.lrs),
        "losses": list(finding.losses),
        "suggestion": finding.suggestion,
        "confidence": finding.confidence,
        "reason": finding.reason,
    }
