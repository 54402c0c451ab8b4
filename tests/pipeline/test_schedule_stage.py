"""The schedule study's horizon: your setup's training time, whose losses are the ones to
beat: ``--horizon``, else your script's own training where its Trainer says how long it is
and that fits in the budget's share, never under four measurement windows."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from autoaccel.config import TrainingConfig
from autoaccel.measure import Measurement
from autoaccel.pipeline import TUNE, PipelineOptions
from autoaccel.pipeline.options import Job
from autoaccel.pipeline.schedule import schedule_horizon
from autoaccel.probe import probe_system
from autoaccel.search.space import WorkloadFacts
from autoaccel.states import Outcome

TTL = PipelineOptions.checked(TUNE, objective="time-to-loss")
FLOOR = 4 * TTL.settings.window_s


@pytest.mark.parametrize(
    ("own_s", "horizon_s", "words"),
    [
        (None, 30.0, "a tenth of what the budget leaves"),
        (12.0, 12.0, "your script's own training (12.0 s"),
        (2.0, FLOOR, f"at least {FLOOR:.0f} s"),
        (90.0, 30.0, "your script's own training takes 90 s here"),
    ],
)
def test_your_own_training_is_the_horizon_where_it_fits(
    own_s: float | None, horizon_s: float, words: str
) -> None:
    horizon, why = schedule_horizon(TTL, 300.0, own_s)
    assert horizon == pytest.approx(horizon_s) and words in why


def test_the_horizon_you_give_wins() -> None:
    options = replace(TTL, horizon_s=20.0)
    assert schedule_horizon(options, 300.0, 5.0) == (20.0, "as --horizon asks")


def test_your_own_training_is_its_samples_at_your_baseline_rate() -> None:
    facts = WorkloadFacts("m", 10, 4096, False, True, torch.device("cpu"), 1.0)
    baseline = Measurement(Outcome.OK, samples_per_s=2048.0)
    job = Job(lambda c: baseline, TrainingConfig(), baseline, facts, probe_system())
    assert job.own_training_s is None  # the script did not say
    job = replace(job, facts=replace(facts, own_samples=3 * 4096))
    assert job.own_training_s == pytest.approx(6.0)
