"""The diagnosis and its thresholds."""

from __future__ import annotations

from autoaccel.measure import Measurement
from autoaccel.search import Diagnosis, diagnose


def test_diagnosis_thresholds() -> None:
    class Space:
        class memory:
            budget_bytes = 1000

    waiting = Measurement(outcome="ok", data_wait_s=0.3, compute_s=0.7)
    busy = Measurement(outcome="ok", data_wait_s=0.1, compute_s=0.9)
    full = Measurement(outcome="ok", data_wait_s=0.1, compute_s=0.9, peak_memory_bytes=900)
    assert diagnose(waiting, Space).bound == "input"  # type: ignore[arg-type]
    assert diagnose(busy, Space).bound == "compute"  # type: ignore[arg-type]
    assert diagnose(full, Space).bound == "memory"  # type: ignore[arg-type]
    assert "input-bound at >= 20%" in str(diagnose(busy, Space))  # type: ignore[arg-type]
    assert isinstance(diagnose(busy, Space), Diagnosis)  # type: ignore[arg-type]
