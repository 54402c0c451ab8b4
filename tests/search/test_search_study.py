from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
import torch
from models import FAST, OutOfMemoryAbove, mlp, tabular
from optuna.trial import TrialState

from autoaccel.budget import Budget
from autoaccel.config import TrainingConfig
from autoaccel.probe import probe_system
from autoaccel.runtime.data import describe_data
from autoaccel.search import Search, storage_url
from autoaccel.search.records import params_key
from autoaccel.search.space import build_space
from autoaccel.trials.in_process import run_trial
from autoaccel.trials.workload import make_workload


def setup(
    model: torch.nn.Module, tmp_path: Path, **search: object
) -> tuple[Search, TrainingConfig]:
    spec = describe_data(tabular(1024))
    workload = make_workload(model, spec, loss_fn=None, optimizer=None)
    user = TrainingConfig(batch_size=32, num_threads=1)
    space = build_space(
        probe_system(),
        user,
        dataset_size=len(spec),
        device=torch.device("cpu"),
        conv_model=False,
        tensor_data=True,
        baseline_memory_bytes=None,
    )
    options: dict[str, object] = dict(
        budget=Budget(60), max_trials=8, study_name="t", storage=str(tmp_path / "s.db"), seed=0
    )
    options.update(search)

    def trial_fn(config: TrainingConfig, prune: object) -> object:
        return run_trial(workload, config, FAST, prune=prune)  # type: ignore[arg-type]

    return Search(space, trial_fn, **options), user  # type: ignore[arg-type]


def test_out_of_memory_is_recorded_and_steers_the_search(tmp_path: Path) -> None:
    search, user = setup(OutOfMemoryAbove(100), tmp_path, max_trials=12, priority=["batch_size"])
    result = search.run(user)
    ooms = [r for r in result.records if r.measurement.outcome == "oom"]
    assert ooms, "the search should have tried a batch above 100"
    assert all(r.config.batch_size > 100 for r in ooms)
    # Trials stopped early as slower are counted apart: they are not failures.
    assert result.failures["oom"] == len(ooms) and "pruned" not in result.failures
    assert result.pruned == sum(r.measurement.outcome == "pruned" for r in result.records)
    assert result.best.config.batch_size <= 100 and result.best.measurement.ok
    assert search.space.memory.smallest_oom is not None
    study = optuna.load_study(study_name="t", storage=storage_url(str(tmp_path / "s.db")))
    failed = [
        t for t in study.trials if t.user_attrs.get("measurement", {}).get("outcome") == "oom"
    ]
    assert failed and all(t.state == TrialState.COMPLETE and t.value == 0.0 for t in failed)
    assert all(t.constraints == {"feasible": 1.0} for t in failed)


def test_max_trials_and_the_budget_stop_the_search(tmp_path: Path) -> None:
    search, user = setup(mlp(), tmp_path, max_trials=3)
    result = search.run(user)
    assert result.trials_measured == 3 and "max_trials (3)" in result.stop_reason
    budget = Budget(0.5)
    budget.keep("what follows", 0.2)
    search, user = setup(mlp(), tmp_path / "b", budget=budget, max_trials=50)
    result = search.run(user)
    assert result.trials_measured <= 2
    # The budget as given, the time really spent, and what was kept for later phases.
    assert re.fullmatch(
        r"budget \(0\.5 s\): \d\.\d s spent, 0\.2 s kept for what follows", result.stop_reason
    )


def test_an_interrupted_study_resumes(tmp_path: Path) -> None:
    first, user = setup(mlp(), tmp_path, max_trials=3)
    done = first.run(user)
    again, _ = setup(mlp(), tmp_path, max_trials=3)
    assert {r.source for r in again.records} == {"resumed"}
    assert len(again.records) == len(done.records)
    result = again.run(user)
    # The baseline comes from the stored study, and new trials are new configurations.
    assert result.baseline.source == "resumed"
    keys = [tuple(sorted(r.params.items())) for r in result.records]
    assert len(keys) == len(set(keys))


def test_trials_measured_on_other_hardware_are_not_ranked(tmp_path: Path) -> None:
    first, user = setup(mlp(), tmp_path, max_trials=3, fingerprint="machine-a")
    done = first.run(user)
    elsewhere, _ = setup(mlp(), tmp_path, max_trials=3, fingerprint="machine-b")
    assert not elsewhere.records and elsewhere._other_hardware == len(done.records)
    result = elsewhere.run(user)  # measures its own baseline, counts the others apart
    assert result.other_hardware == len(done.records)
    assert all(r.source != "resumed" for r in result.records)
    same, _ = setup(mlp(), tmp_path, max_trials=3, fingerprint="machine-a")
    assert len(same.records) == len(done.records)  # its own machine's trials rank again


def test_storage_urls(tmp_path: Path) -> None:
    assert storage_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert storage_url(str(tmp_path / "x" / "s.db")) == f"sqlite:///{tmp_path}/x/s.db"
    assert (tmp_path / "x").is_dir()


@pytest.mark.parametrize("patience", [1])
def test_stops_when_gain_is_unlikely(tmp_path: Path, patience: int) -> None:
    search, user = setup(mlp(), tmp_path, max_trials=40, patience=patience)
    result = search.run(user)
    assert result.trials_measured < 40
    assert "further gain unlikely" in result.stop_reason or "tried" in result.stop_reason


def test_a_study_holds_one_workload(tmp_path: Path) -> None:
    """Issue 36, 9: a second script given the same --study is refused, not ranked and pruned
    against the first one's trials."""
    from autoaccel.errors import UsageError

    setup(mlp(), tmp_path, workload="train_a.py (model 1d4044de00cc)")
    setup(mlp(), tmp_path, workload="train_a.py (model 1d4044de00cc)")  # the same: resumes
    with pytest.raises(UsageError, match=r"holds the trials of train_a\.py .*not of train_b\.py"):
        setup(mlp(), tmp_path, workload="train_b.py (model 9f00aa11bb22)")


def test_a_config_out_of_the_guards_reach_is_recorded_unmeasured(tmp_path: Path) -> None:
    """The pipeline's guard tells the search which configs it could never write (too few
    optimizer steps for its check runs): those are recorded, not measured; they count
    neither as measured nor as stopped early, and a resumed study judges them again (at
    its own budget, the answer may differ)."""
    measured: list[int] = []
    calls: list[float] = []

    def beyond_64(config: TrainingConfig, best: object) -> str | None:
        calls.append(best.value)  # type: ignore[attr-defined]
        return f"not run: batch {config.batch_size}" if config.batch_size > 64 else None

    search, user = setup(
        mlp(), tmp_path, max_trials=6, priority=["batch_size"], out_of_reach=beyond_64
    )
    trial_fn = search.trial_fn
    search.trial_fn = lambda c, p: measured.append(c.batch_size) or trial_fn(c, p)  # type: ignore[func-returns-value]
    result = search.run(user)
    unreached = [r for r in result.records if r.source == "out of reach"]
    assert unreached and all(r.config.batch_size > 64 for r in unreached)
    assert all(r.measurement.message == f"not run: batch {r.config.batch_size}" for r in unreached)
    assert max(measured) <= 64 and all(b > 0 for b in calls)  # judged against a measured best
    assert result.out_of_reach == len(unreached)
    assert result.trials_measured == len(measured)  # the baseline among them
    assert result.pruned == sum(
        r.measurement.outcome == "pruned" and r.source != "out of reach" for r in result.records
    )
    again, _ = setup(mlp(), tmp_path, max_trials=6)
    keys = {params_key(r.params) for r in again.records}
    assert keys and not keys & {params_key(r.params) for r in unreached}


def test_a_config_another_worker_left_out_of_reach_is_no_claim_on_it(tmp_path: Path) -> None:
    """In a shared study, a trial another worker recorded unmeasured as out of its guard's
    reach does not claim its config (this worker would step back from it on every try and
    propose it again: it judges it at its own budget); a measured trial does."""
    from autoaccel.search.shared import OUT_OF_REACH, taken_elsewhere

    study = optuna.create_study(storage=storage_url(str(tmp_path / "s.db")), direction="maximize")
    space = {"batch_size": optuna.distributions.CategoricalDistribution([32, 4096])}
    big = {"batch_size": 4096}
    study.enqueue_trial(big)
    left = study.ask(space)
    left.set_user_attr("source", OUT_OF_REACH)
    study.tell(left, state=TrialState.PRUNED)
    study.enqueue_trial(big)
    mine = study.ask(space)
    assert taken_elsewhere(study, mine, params_key, params_key(big)) is None
    study.enqueue_trial(big)
    measured = study.ask(space)
    measured.set_user_attr("source", "sampler")
    study.tell(measured, 1.0)
    assert taken_elsewhere(study, mine, params_key, params_key(big)) == measured.number
