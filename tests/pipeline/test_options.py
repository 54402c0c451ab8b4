"""One options object from argv (or advise()'s keywords) to the pipeline: its defaults and
its rules, spelled as each front end's user wrote them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autoaccel.budget import ADVISE_BUDGET_S, TRIAL_TIMEOUT_S, TUNE_BUDGET_S, TUNE_TTL_BUDGET_S
from autoaccel.config import TrainingConfig
from autoaccel.errors import UsageError
from autoaccel.launchers import read_launch
from autoaccel.pipeline import ADVISE, TUNE, PipelineOptions, study_name_for
from autoaccel.probe import probe_system
from autoaccel.search import WorkloadFacts
from autoaccel.search.space import build_space
from autoaccel.states import Objective


def test_the_defaults_are_the_front_ends() -> None:
    tune = PipelineOptions.checked(TUNE)
    assert (tune.budget_s, tune.objective, tune.prefix, tune.include_parallel) == (
        TUNE_BUDGET_S,
        Objective.THROUGHPUT,
        "tune",
        True,
    )
    assert tune.trial_timeout_s == TRIAL_TIMEOUT_S
    ttl = PipelineOptions.checked(TUNE, objective="time-to-loss")
    assert ttl.budget_s == TUNE_TTL_BUDGET_S
    advise = PipelineOptions.checked(ADVISE, default_objective=Objective.TIME_TO_LOSS)
    assert (advise.budget_s, advise.objective) == (3 * ADVISE_BUDGET_S, Objective.TIME_TO_LOSS)
    assert PipelineOptions.checked(ADVISE, budget_s=30).budget_s == 30
    assert not PipelineOptions.checked(ADVISE).include_parallel


@pytest.mark.parametrize(
    ("fields", "tune_says", "advise_says"),
    [
        ({"objective": "fast"}, "--objective must be one of", "objective must be one of"),
        (
            {"metric": "accuracy"},
            "--metric accuracy needs --target, the value to reach (e.g. --target 0.95",
            "metric= needs target=, the value to reach (e.g. target=0.95",
        ),
        (
            {"target": 0.9},
            "--target is for --objective time-to-loss (the throughput objective has no "
            "quality to reach); add --objective time-to-loss",
            "target= is for objective='time-to-loss' (the throughput objective has no quality "
            "to reach); give val_data, or objective='time-to-loss'",
        ),
        (
            {"objective": "time-to-loss", "target": float("nan")},
            "--target must be a finite number, got nan",
            "target= must be a finite number, got nan",
        ),
        (
            {"objective": "time-to-loss", "lr_find": True},
            "--lr-find is part of --objective time-to-loss",
            "lr_find= is part of objective='time-to-loss'",
        ),
        ({"budget_s": 5}, "a budget of 5 s is too small", "a budget of 5 s is too small"),
        ({"max_trials": 0}, "max_trials must be >= 1", "max_trials must be >= 1"),
    ],
)
def test_the_rules_are_checked_once_and_spelled_as_given(
    fields: dict[str, object], tune_says: str, advise_says: str
) -> None:
    with pytest.raises(UsageError) as tune_error:
        PipelineOptions.checked(TUNE, **fields)  # type: ignore[arg-type]
    assert tune_says in str(tune_error.value)
    with pytest.raises(UsageError) as advise_error:
        PipelineOptions.checked(ADVISE, **fields)  # type: ignore[arg-type]
    assert advise_says in str(advise_error.value)


def test_a_budget_needs_more_for_a_script_than_in_process() -> None:
    """The least budget follows each front end's start-up: a fresh interpreter per trial."""
    PipelineOptions.checked(ADVISE, budget_s=10)
    with pytest.raises(UsageError, match="give at least"):
        PipelineOptions.checked(TUNE, budget_s=10)


def test_a_rerun_resumes_only_the_setup_its_trials_measured(tmp_path: Path) -> None:
    """Every trial takes the knobs not searched from your setup: the same script tuned
    under a launch config that compiles (compile is not searched under 10 minutes) trained
    every trial compiled, so it is another study; the same setup again is the same one."""
    (tmp_path / "accelerate.yaml").write_text(
        "distributed_type: 'NO'\nuse_cpu: true\ndynamo_config:\n  dynamo_backend: INDUCTOR\n"
    )
    own = TrainingConfig(batch_size=32)
    launched = read_launch(tmp_path / "accelerate.yaml").applied_to(own)
    assert launched.compile and not own.compile
    profile = probe_system(light=True)
    facts = WorkloadFacts("Net", 1000, 4096, False, True, torch.device("cpu"), 0.5)
    options = PipelineOptions.checked(TUNE)

    def name(user: TrainingConfig) -> str:
        space = build_space(
            profile,
            user,
            dataset_size=4096,
            device=torch.device("cpu"),
            conv_model=False,
            tensor_data=True,
            baseline_memory_bytes=None,
        )
        assert "compile" not in space.names
        return study_name_for(facts, space, profile, options)

    assert name(launched) != name(own)
    assert name(TrainingConfig(batch_size=32)) == name(own)
