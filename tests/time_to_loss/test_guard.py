"""The throughput pick's convergence guard, on a real model trained in-process."""

from __future__ import annotations

import io
from dataclasses import replace

import torch
from models import learnable, mlp
from rich.console import Console

from autoaccel.budget import Budget
from autoaccel.config import TrainingConfig
from autoaccel.measure import Measurement
from autoaccel.pipeline import (
    Job,
    PhaseCosts,
    PipelineOptions,
    guard_pick,
    objective_line,
    plan_budget,
)
from autoaccel.probe import probe_system
from autoaccel.runtime.data import describe_data
from autoaccel.search import SearchResult, TrialRecord, WorkloadFacts
from autoaccel.states import Objective
from autoaccel.time_to_loss import HeldOut, InProcessTrainer, holdout_split
from autoaccel.time_to_loss.guard import GuardVerdict, check_convergence, steps_as_yours
from autoaccel.trials.workload import make_workload

USER = TrainingConfig(batch_size=32, num_threads=1)


def trainer(*, held_out: bool) -> InProcessTrainer:
    model = mlp()
    spec = describe_data(learnable(2048), loader_kwargs={"batch_size": 32, "shuffle": True})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    workload = make_workload(model, spec, loss_fn=None, optimizer=optimizer)
    if held_out:
        return InProcessTrainer(workload, HeldOut(*holdout_split(spec, learnable(256))))
    return InProcessTrainer(workload, HeldOut(spec, None))


def test_a_pick_that_learns_more_slowly_is_refused_on_the_training_loss() -> None:
    slow = TrainingConfig(batch_size=32, num_threads=1, lr=1e-5)  # barely moves
    verdict = check_convergence(trainer(held_out=False), slow, USER, horizon_s=1.5, held_out=False)
    assert not verdict.kept
    assert verdict.how == "guarded"
    assert verdict.pace is not None and verdict.pace > 1
    assert "training loss fell behind yours: it reached" in verdict.line
    assert verdict.worst is not None and verdict.worst > 1.1
    assert not verdict.line.endswith("is kept")  # what is written instead is the caller's


def test_a_pick_that_diverges_is_refused_saying_so() -> None:
    wild = TrainingConfig(batch_size=32, num_threads=1, lr=100.0)
    verdict = check_convergence(trainer(held_out=False), wild, USER, horizon_s=1.0, held_out=False)
    assert not verdict.kept
    assert "it diverged (the loss became" in verdict.line


def test_a_pick_that_learns_sooner_is_kept_and_measured_on_held_out_data() -> None:
    brisk = TrainingConfig(batch_size=32, num_threads=1, lr=0.5)  # 10x yours, still stable
    verdict = check_convergence(trainer(held_out=True), brisk, USER, horizon_s=1.5, held_out=True)
    assert verdict.kept, verdict.line
    assert verdict.how == "measured"
    assert "held-out loss kept pace with yours" in verdict.line
    assert verdict.yours is not None and verdict.pick is not None
    # Both curves start at the untrained model's held-out loss: the same weights.
    assert verdict.pick.start_loss == verdict.yours.start_loss


def test_the_objective_line_says_what_chose_the_pick_and_how_convergence_was_checked() -> None:
    throughput = PipelineOptions()
    guarded = GuardVerdict(False, "guarded", "its training loss fell more slowly", 1.4)
    assert objective_line(throughput, guarded) == (
        "throughput (samples/s); convergence guarded by the training loss: its training "
        "loss fell more slowly"
    )
    kept = GuardVerdict(True, "unchanged", "the pick keeps your global batch (32)")
    assert "convergence not affected" in objective_line(throughput, kept)
    assert objective_line(PipelineOptions(keep_global_batch=True), None).endswith("kept as asked")
    ttl = PipelineOptions(objective=Objective.TIME_TO_LOSS)
    assert objective_line(ttl, None).startswith("time-to-loss")


def _record(n: int, rate: float, **knobs: object) -> TrialRecord:
    config = TrainingConfig(**knobs)  # type: ignore[arg-type]
    return TrialRecord(n, {}, config, Measurement(outcome="ok", samples_per_s=rate), "x")


def _guard_job(model: torch.nn.Module, records: list[TrialRecord]) -> tuple[Job, SearchResult]:
    spec = describe_data(learnable(2048), loader_kwargs={"batch_size": 32, "shuffle": True})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    trainer = InProcessTrainer(
        make_workload(model, spec, loss_fn=None, optimizer=optimizer), HeldOut(spec, None)
    )

    def measure(config: TrainingConfig, prune: object = None) -> Measurement:
        raise AssertionError(f"the guard measured {config}: every candidate has a record")

    facts = WorkloadFacts("m", 1, 2048, False, True, torch.device("cpu"), 0.5)
    job = Job(measure, USER, records[0].measurement, facts, probe_system(), 1.0, None, trainer)
    result = SearchResult(records, records[0], records[1], "done", 1.0, "s", "", 4, 4)
    return job, result


def _guard(
    job: Job, result: SearchResult, console: Console | None
) -> tuple[SearchResult, GuardVerdict]:
    """The guard stage with a plan that has room for check runs (the records carry no
    trial curves, so the check runs decide)."""
    plan = plan_budget(120, 110, PhaseCosts(trial_s=1.0, start_s=0.5), guarded=True)
    assert plan.check_runs
    return guard_pick(job, result, plan, Budget(120), console)


def test_each_faster_setup_whose_steps_differ_is_checked_until_one_stands() -> None:
    """Your global batch alone does not make a step learn as yours: split into micro-batches
    of 1, batch norm cannot train. The pick (batch 1) and the next fastest (1 x 32
    accumulated) both fail their check runs; the fastest setup whose steps are yours (your
    batch, two threads) is written."""
    torch.manual_seed(0)
    bn = torch.nn.Sequential(
        torch.nn.Linear(16, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Linear(32, 4)
    )
    baseline = _record(0, 100.0, batch_size=32, num_threads=1)
    pick = _record(1, 300.0, batch_size=1, num_threads=1)
    split = _record(2, 200.0, batch_size=1, grad_accum_steps=32, num_threads=1)
    threads = _record(3, 150.0, batch_size=32, num_threads=2)
    job, result = _guard_job(bn, [baseline, pick, split, threads])
    console = Console(file=io.StringIO(), width=10_000)
    checked, verdict = _guard(job, result, console)
    assert checked.best is threads
    assert not verdict.kept and verdict.how == "unchanged"
    first, second, third = verdict.line.split("; ")
    assert first.startswith("batch 1, 32-true: it ")
    assert second.startswith("batch 32 (1 x 32 accumulated), 32-true: it ")
    assert third == "batch 32, 32-true: its steps are yours, so it learns as yours: that is kept"
    said = console.file.getvalue()  # type: ignore[attr-defined]
    assert said.count("checking the pick's convergence") == 1  # your curve drawn once


def test_a_pick_whose_steps_are_yours_is_not_trained_again() -> None:
    baseline = _record(0, 100.0, batch_size=32, num_threads=1)
    threads = _record(1, 150.0, batch_size=32, num_threads=2, channels_last=True)
    job, result = _guard_job(mlp(), [baseline, threads])
    checked, verdict = _guard(job, result, None)
    assert checked.best is threads and verdict.kept and verdict.how == "unchanged"
    assert verdict.yours is None  # nothing trained
    assert steps_as_yours(threads.config, USER)
    assert not steps_as_yours(replace(threads.config, precision="bf16-mixed"), USER)


def test_check_runs_use_time_left_over_when_the_plan_kept_none() -> None:
    """A plan that kept no time for check runs (3 minutes at these costs) still runs them
    when the end phases left enough over; with nothing left, the curves' own reason stands
    and nothing is trained."""
    plan = plan_budget(180, 175, PhaseCosts(trial_s=5.0, start_s=3.0), guarded=True)
    assert not plan.check_runs
    baseline = _record(0, 100.0, batch_size=32, num_threads=1)
    pick = _record(1, 300.0, batch_size=64, num_threads=1)
    job, result = _guard_job(mlp(), [baseline, pick])
    console = Console(file=io.StringIO(), width=10_000)
    _, verdict = guard_pick(job, result, plan, Budget(120), console)
    said = console.file.getvalue()  # type: ignore[attr-defined]
    assert said.count("checking the pick's convergence") == 1  # the check runs ran
    assert verdict.line.startswith("batch 64, 32-true: its training loss ")
    now = [0.0]
    spent = Budget(120, clock=lambda: now[0])
    now[0] = 115.0  # 5 s left: no room for check runs
    console = Console(file=io.StringIO(), width=10_000)
    _, verdict = guard_pick(job, result, plan, spent, console)
    assert "checking the pick's convergence" not in console.file.getvalue()  # type: ignore[attr-defined]
    assert "no time was left for its check runs" not in verdict.line
