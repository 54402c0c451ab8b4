"""Loss curves from a real training script: the hook, the shared scoring rule, pruning
while the script trains, other data orders, and a hook that fails mid-run."""

from __future__ import annotations

import math
from pathlib import Path

import psutil
import pytest

from autoaccel.config import TrainingConfig
from autoaccel.curves import CurvePoint
from autoaccel.measure import MeterSettings
from autoaccel.scoring import Scoring
from autoaccel.states import Outcome
from autoaccel.trials.script import ScriptRunner
from autoaccel.trials.script_curves import POINTS_FILE, PointsReader, ScriptTrainer

pytestmark = pytest.mark.slow

SCRIPT = """
import os
import torch
from torch import nn
import torch.nn.functional as F
import autoaccel

torch.manual_seed(0)
g = torch.Generator().manual_seed(1)
teacher = torch.randn(16, 4, generator=g)
x = torch.randn(2048, 16, generator=g)
y = (x @ teacher).argmax(1)
vx, vy = x[:256], y[:256]
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
calls = [0]

def evaluate():
    calls[0] += 1
    if calls[0] > {fail_after}:
        {failure}
    out = model(vx)
    return {{"loss": F.cross_entropy(out, vy).item(),
            "accuracy": (out.argmax(1) == vy).float().mean().item()}}

run = autoaccel.prepare(model, optimizer, (x[256:], y[256:]),
                        loader_kwargs={{"batch_size": 32, "shuffle": True}}, {hook})
while True:
    for xb, yb in run.loader:
        loss = F.cross_entropy(run.model(xb), yb)
        run.backward(loss)
        run.step()
"""


FAILURES = {
    "raises": 'raise RuntimeError("validation data went missing")',
    "nan": 'return {"loss": float("nan"), "accuracy": 0.5}',
    "hangs": "import time; time.sleep(600)",
}


def running(script: str) -> bool:
    """Whether a process runs ``script``. Processes psutil cannot read (another test's
    zombie, one that ends while it reads) hold no cmdline here: ``process_iter``'s
    ``info`` has None for them, where ``cmdline()`` raised (a CI run failed on a zombie)."""
    return any(
        script in " ".join(p.info["cmdline"] or ()) for p in psutil.process_iter(["cmdline"])
    )


def trainer_for(
    tmp_path: Path,
    *,
    hook: bool = True,
    fail_after: int = 10**6,
    failure: str = "raises",
    metric: str | None = None,
    timeout_s: float = 60,
) -> ScriptTrainer:
    path = tmp_path / "train.py"
    text = SCRIPT.format(hook="evaluate=evaluate" if hook else "", fail_after=fail_after,
                         failure="{failure}")  # fmt: skip
    path.write_text(text.replace("{failure}", FAILURES[failure]))
    runner = ScriptRunner(
        path, (), trials_dir=tmp_path / "trials", settings=MeterSettings(), timeout_s=timeout_s
    )
    baseline = runner.run(None, metric=metric).report
    assert baseline is not None
    return ScriptTrainer(runner, baseline, metric)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory: pytest.TempPathFactory) -> ScriptTrainer:
    """One script with a hook and its baseline, for the tests that only train it."""
    return trainer_for(tmp_path_factory.mktemp("hooked"), metric="accuracy")


def test_a_script_with_a_hook_draws_its_held_out_curve(trainer: ScriptTrainer) -> None:
    assert trainer.held_out
    assert trainer.optimizer.name == "SGD" and trainer.optimizer.lr == 0.1
    assert trainer.optimizer.momentum == ("momentum", 0.9)
    run = trainer.train_for(TrainingConfig(batch_size=32), seconds=2.0, scoring=Scoring(evals=4))
    assert run.outcome is Outcome.OK, run.message
    assert len(run.curve) == 4
    assert run.start_loss is not None and run.start_metric is not None
    assert run.curve[-1].loss < run.start_loss  # it learned
    assert all(p.metric is not None for p in run.curve)
    seconds = [p.seconds for p in run.curve]
    assert seconds == sorted(seconds) and seconds[-1] >= 2.0  # training time, scoring excluded
    assert [p.step for p in run.curve] == sorted(p.step for p in run.curve)


def test_without_a_hook_the_curve_is_the_training_loss(tmp_path: Path) -> None:
    trainer = trainer_for(tmp_path, hook=False)
    assert not trainer.held_out
    assert "passes prepare() no evaluate hook" in trainer.scored_on
    run = trainer.train_for(
        TrainingConfig(batch_size=64), seconds=1.5, scoring=Scoring(evals=3, held_out=False)
    )
    assert run.outcome is Outcome.OK, run.message
    assert len(run.curve) == 3
    assert run.start_loss is not None and run.curve[-1].loss < run.start_loss


def test_the_pruner_stops_the_script_while_it_trains(trainer: ScriptTrainer) -> None:
    told: list[tuple[int, CurvePoint]] = []

    def prune_at_two(k: int, point: CurvePoint) -> bool:
        told.append((k, point))
        return k >= 2

    run = trainer.train_for(
        TrainingConfig(batch_size=32), seconds=30.0, scoring=Scoring(evals=10), on_eval=prune_at_two
    )
    assert run.outcome is Outcome.PRUNED
    assert run.message == f"stopped at evaluation {len(run.curve)} of 10"
    assert [k for k, _ in told] == [1, 2]
    assert 2 <= len(run.curve) < 10
    folder = trainer.runner.trials_dir / f"{trainer.runner.count - 1:04d}"
    assert (folder / POINTS_FILE).exists()
    script = str(trainer.runner.script)  # this test's own: other tests run a train.py too
    assert not running(script)


def test_another_seed_is_another_data_order_and_the_same_seed_repeats(
    trainer: ScriptTrainer,
) -> None:
    once = Scoring(evals=1, max_steps=40)
    config = TrainingConfig(batch_size=32)
    a, b, c = (trainer.train_for(config, seconds=60, scoring=once, seed=s) for s in (5, 5, 6))
    assert a.curve[-1].step == b.curve[-1].step == c.curve[-1].step == 40
    assert a.curve[-1].loss == b.curve[-1].loss
    assert a.curve[-1].loss != c.curve[-1].loss


def test_a_hook_that_fails_mid_run_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    trainer = trainer_for(tmp_path, fail_after=2)  # each run: the untrained score, a point
    run = trainer.train_for(TrainingConfig(batch_size=32), seconds=3.0, scoring=Scoring(evals=6))
    assert run.outcome is Outcome.ERROR
    assert "evaluate() raised RuntimeError: validation data went missing" in run.message
    assert len(run.curve) == 1  # the point scored before it failed
    assert math.isfinite(run.curve[0].loss)


def test_a_hook_that_turns_nan_later_ends_the_run_as_diverged(tmp_path: Path) -> None:
    """Issue 36: NaN from the hook after good points, not only on its first call."""
    trainer = trainer_for(tmp_path, fail_after=2, failure="nan")
    run = trainer.train_for(TrainingConfig(batch_size=32), seconds=3.0, scoring=Scoring(evals=6))
    assert run.outcome is Outcome.DIVERGED, run.message
    assert "the loss became nan" in run.message
    assert math.isfinite(run.curve[0].loss)


def test_a_hook_that_hangs_later_is_stopped_with_its_run(tmp_path: Path) -> None:
    """Issue 36: a hook that hangs after good points: the run is killed at its timeout, a
    finding about that run, with nothing left running."""
    trainer = trainer_for(tmp_path, fail_after=2, failure="hangs", timeout_s=10)
    run = trainer.train_for(TrainingConfig(batch_size=32), seconds=2.0, scoring=Scoring(evals=4))
    assert run.outcome is Outcome.TIMEOUT, run.message
    script = str(tmp_path / "train.py")
    assert not running(script)


def test_the_range_test_is_the_scripts_own(trainer: ScriptTrainer) -> None:
    finding = trainer.find_lr(TrainingConfig(batch_size=32), steps=60, max_s=30)
    assert len(finding.lrs) > 5
    assert finding.suggestion is not None or finding.reason


def test_points_written_between_two_polls_are_each_told_once_in_order(tmp_path: Path) -> None:
    told: list[tuple[int, float]] = []

    def never_prune(k: int, point: CurvePoint) -> bool:
        told.append((k, point.loss))
        return False

    watch = PointsReader(never_prune, evals=10)
    watch.path = tmp_path / POINTS_FILE
    watch.path.write_text("[0.5, 3, 1.5, null, false]\n[1.0, 6, 1.2, null, false]\n[1.5, 9,")
    assert not watch.stop_when(tmp_path)
    assert told == [(1, 1.5), (2, 1.2)]  # the half-written third line waits
    with watch.path.open("a") as points:
        points.write(" 1.1, null, true]\n")
    assert not watch.stop_when(tmp_path)
    assert told == [(1, 1.5), (2, 1.2)]  # the point that ended the run is not a rung
    assert [p.step for p in watch.points] == [3, 6, 9]
