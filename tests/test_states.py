"""Typed states compare as their spellings, travel as them, and refuse anything else."""

from __future__ import annotations

import json

import pytest

from autoaccel.measure import Measurement
from autoaccel.states import Objective, Outcome, Precision


def test_a_measurement_reads_its_outcome_back_typed() -> None:
    measurement = Measurement.from_dict(json.loads(json.dumps(Measurement("oom").to_dict())))
    assert measurement.outcome is Outcome.OOM and not measurement.ok
    assert json.loads(json.dumps(Measurement(Outcome.OK).to_dict()))["outcome"] == "ok"


def test_a_misspelt_state_is_refused() -> None:
    with pytest.raises(ValueError, match="'out of memory' is not a valid Outcome"):
        Measurement("out of memory")  # type: ignore[arg-type]


def test_spellings_are_the_files_own() -> None:
    assert Precision.spellings() == ("32-true", "tf32", "bf16-mixed", "16-mixed")
    assert Objective.spellings() == ("throughput", "time-to-loss")
    assert str(Precision.BF16_MIXED) == "bf16-mixed" and Precision.FP32 == "32-true"
