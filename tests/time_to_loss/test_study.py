"""The schedule study's decisions on stated curves: which candidate it picks from runs
whose learning speeds are given (the decision under test, not the training, which the
slow tests run for real)."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from autoaccel.budget import Budget
from autoaccel.config import TrainingConfig
from autoaccel.curves import CurvePoint, LossRun
from autoaccel.schedule import LrFinding, OptimizerFacts
from autoaccel.scoring import Scoring
from autoaccel.time_to_loss.study import ScheduleInputs, search_schedule

USER = TrainingConfig(batch_size=32, num_threads=2)
YOUR_LR = 0.05


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class StatedTrainer:
    """A ``Trainer`` whose held-out loss falls as exp(-rate x seconds), the rate stated per
    config and data order; each run costs the injected clock its training seconds."""

    seed = 0
    scored_on = "stated curves"
    held_out = True
    optimizer = OptimizerFacts("SGD", YOUR_LR, ("momentum", 0.9))

    def __init__(self, clock: Clock, rate: Callable[[TrainingConfig, int], float]) -> None:
        self.clock, self.rate = clock, rate

    def train_for(
        self,
        config: TrainingConfig,
        *,
        seconds: float,
        scoring: Scoring,
        on_eval: Callable[[int, CurvePoint], bool] | None = None,
        seed: int | None = None,
    ) -> LossRun:
        rate = self.rate(config, self.seed if seed is None else seed)
        points: list[CurvePoint] = []
        for k in range(1, scoring.evals + 1):
            point = CurvePoint(
                seconds * k / scoring.evals, 10 * k, math.exp(-rate * seconds * k / scoring.evals)
            )
            points.append(point)
            self.clock.now += seconds / scoring.evals
            if scoring.stop_at is not None and scoring.stop_at.reached(point):
                break
            if on_eval is not None and on_eval(k, point):
                return LossRun(config, "pruned", "stopped", tuple(points), start_loss=1.0)
        return LossRun(config, "ok", "", tuple(points), start_loss=1.0)

    def find_lr(self, config: TrainingConfig, *, steps: int, max_s: float) -> LrFinding:
        return LrFinding((), (), None, "none", "no sweep on stated curves")


def _inputs(tmp_path: Path, name: str) -> ScheduleInputs:
    """Your setup at batch 32 and batch 64 measured, over a 10 s horizon."""
    return ScheduleInputs(
        system=USER,
        user=USER,
        rates={32: 1000.0, 64: 1800.0},
        horizon_s=10.0,
        study_name=name,
        storage=str(tmp_path / "s.db"),
        seed=0,
    )


def test_a_candidate_that_trains_as_your_setup_is_never_the_pick(tmp_path: Path) -> None:
    """The study enqueues your LR at your batch with no schedule: on a script with no
    scheduler of autoaccel's that is your setup trained again. Its lucky first run (1.7x
    your pace, as the Lightning example's was) must not make it the pick, to be written as
    a speedup: it leaves the final round, your setup is kept, and its pace is told as the
    spread between two runs of one setup."""
    clock = Clock()

    def rate(config: TrainingConfig, order: int) -> float:
        yours = config.lr is None or (
            math.isclose(config.lr, YOUR_LR, rel_tol=1e-3)
            and config.schedule == "constant"
            and config.warmup_steps == 0
            and config.global_batch == 32
        )
        if yours:
            return 0.3 * (1.7 if config.lr is not None and order == 0 else 1.0)
        return 0.15  # every other candidate learns at half your pace

    inputs = _inputs(tmp_path, "stated")
    result = search_schedule(StatedTrainer(clock, rate), inputs, Budget(120, clock=clock))
    again = [r for r in result.runs if r.label.endswith("(your setup again)")]
    assert len(again) == 1 and again[0].speedup is not None and again[0].speedup > 1.5
    assert result.best is result.baseline  # your setup kept
    note = next(n for n in result.notes if "trained exactly as your setup" in n)
    assert note.startswith(f"schedule trial #{again[0].number} {again[0].speedup:.2f}x your pace")
    assert "never the pick" in note


def test_a_batch_a_candidates_run_holds_few_steps_of_is_left_out(tmp_path: Path) -> None:
    """A 6 s candidate run at 4,000 samples/s holds 23 steps of batch 1024 and 12 of 2048:
    too few to train (the HF example's study spent 7 of 17 candidates on such batches, all
    pruned near the untrained loss). They are left out, the throughput pick's batch too
    (its enqueued candidates go to the largest batch kept), and the study says so."""
    clock = Clock()
    trained: list[TrainingConfig] = []
    out = io.StringIO()

    def rate(config: TrainingConfig, order: int) -> float:
        trained.append(config)
        return 0.3

    system = TrainingConfig(batch_size=2048, num_threads=2)
    inputs = ScheduleInputs(
        system=system,
        user=USER,
        rates={32: 1000.0, 64: 1800.0, 1024: 4000.0, 2048: 4100.0},
        fastest={32: USER, 2048: system},
        horizon_s=6.0,
        study_name="few-steps",
        storage=str(tmp_path / "s.db"),
        seed=0,
    )
    trainer = StatedTrainer(clock, rate)
    console = Console(file=out, width=300)
    search_schedule(trainer, inputs, Budget(120, clock=clock), console=console)
    batches = {c.global_batch for c in trained}
    assert max(batches) <= 256 and 32 in batches and len(batches) > 1
    line = next(s for s in out.getvalue().splitlines() if "left out" in s)
    assert "1024, 2048" in line and "fewer than 50 optimizer steps" in line


def test_a_pick_kept_over_its_runs_after_the_search_is_told_at_their_mean(tmp_path: Path) -> None:
    """The pick stands when its runs after the search (the final round's, then the
    whole-horizon one) are sooner than yours together; the study told the last run alone
    as its figure. The Lightning example's pick on a 2-core EPYC ran 1.23x, then 0.83x
    for the whole horizon: kept at about 1.01x, and reported, and written to the config,
    as 0.83x, slower than the setup it replaced."""
    clock = Clock()
    out = io.StringIO()

    def rate(config: TrainingConfig, order: int) -> float:
        if config.lr is None or (config.schedule == "constant" and config.warmup_steps == 0):
            return 0.3  # your setup, and your LR held as yours is
        return 0.3 * (1.5 if order <= 1 else 0.9)  # sooner on the first orders only

    inputs = _inputs(tmp_path, "kept-over-its-runs")
    console = Console(file=out, width=300)
    trainer = StatedTrainer(clock, rate)
    result = search_schedule(trainer, inputs, Budget(120, clock=clock), console=console)
    assert result.best is not result.baseline and result.check is not None
    after = result.after_search
    assert len(after) >= 2 and after[-1] == result.check.pace
    assert result.check.speedup is not None and result.check.speedup < 1  # the last run alone
    mean = 1 / math.exp(sum(math.log(p) for p in after) / len(after))
    assert result.speedup == pytest.approx(mean) and result.speedup > 1
    stands = next(s for s in out.getvalue().splitlines() if "the pick stands" in s)
    each = ", ".join(f"{1 / p:.2f}x" for p in after)  # as each run measured it
    assert stands.endswith(
        f"{mean:.2f}x your pace over its {len(after)} runs after the search ({each})"
    )
