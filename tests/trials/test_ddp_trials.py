"""Multi-process trials under torchrun, for real (gloo on this CPU): a rank that fails,
a rank that hangs, and what is left running afterwards."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest
from trials.test_script_trials import SHORT, script

from autoaccel.config import TrainingConfig
from autoaccel.scoring import Scoring
from autoaccel.states import Outcome
from autoaccel.trials.script import ScriptRunner
from autoaccel.trials.script_curves import ScriptTrainer

DDP = TrainingConfig(batch_size=32, strategy="ddp", processes=2, num_threads=1)


def _runner(path: Path, tmp_path: Path, timeout_s: float) -> ScriptRunner:
    return ScriptRunner(
        path, (), trials_dir=tmp_path / "trials", settings=SHORT, timeout_s=timeout_s
    )


def _left_running(path: Path) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if str(path) in line:
            found.append(line)
    return found


def _rank_1_at_step_5(action: str) -> str:
    """The test script's forward line: rank 1 does ``action`` at its fifth step."""
    return (
        "steps = getattr(self, 'steps', 0) + 1; self.steps = steps\n"
        f"        if os.environ.get('RANK') == '1' and steps == 5: {action}"
    )


def test_a_rank_that_runs_out_of_memory_fails_the_trial_as_oom(tmp_path: Path) -> None:
    """Rank 1 really asks the CPU allocator for 16 TiB at its fifth step; rank 0 is fine.
    The trial is an "oom" finding named for rank 1, well inside its timeout, and no rank
    is left behind."""
    forward = _rank_1_at_step_5("torch.empty(2**42, dtype=torch.float32)")
    path = script(tmp_path, forward=forward)
    started = time.monotonic()
    trial = _runner(path, tmp_path, timeout_s=90).run(DDP)
    took = time.monotonic() - started
    assert trial.measurement.outcome == "oom", trial.log_tail()
    assert trial.measurement.message.startswith("rank 1 of 2: "), trial.measurement.message
    assert "can't allocate memory" in trial.measurement.message
    assert took < 60 and not trial.timed_out
    assert _left_running(path) == []


def test_a_loss_curve_run_whose_rank_1_runs_out_of_memory_is_reported_as_oom(
    tmp_path: Path,
) -> None:
    """The same failure in a loss-curve run (the guard's check runs, the schedule study):
    rank 1's report stands, not rank 0's broken connection or its exit line."""
    forward = _rank_1_at_step_5("torch.empty(2**42, dtype=torch.float32)")
    path = script(tmp_path, forward=forward)
    runner = _runner(path, tmp_path, timeout_s=90)
    baseline = runner.run(None).report
    assert baseline is not None
    run = ScriptTrainer(runner, baseline, None).train_for(
        DDP, seconds=5.0, scoring=Scoring(5, held_out=False)
    )
    assert run.outcome is Outcome.OOM, run.message
    assert run.message.startswith("rank 1 of 2: ") and "can't allocate memory" in run.message
    assert _left_running(path) == []


@pytest.mark.slow
def test_a_rank_that_hangs_is_killed_with_the_others_at_the_timeout(tmp_path: Path) -> None:
    """Rank 1 stops in a sleep; rank 0 waits for it in the gradient all-reduce. The trial
    timeout ends the trial, and every rank goes with torchrun, though torchrun starts
    each rank in a session of its own."""
    forward = _rank_1_at_step_5("time.sleep(3600)")
    path = script(tmp_path, forward=forward)
    started = time.monotonic()
    trial = _runner(path, tmp_path, timeout_s=15).run(DDP)
    took = time.monotonic() - started
    assert trial.timed_out and trial.measurement.outcome == "timeout"
    assert took < 15 + 12  # the timeout, then TERM and KILL with their grace periods
    assert _left_running(path) == []
