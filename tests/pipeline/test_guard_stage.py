"""The guard stage: the fastest measured setup with the evidence to stand, decided on the
trials' own curves (no extra run: the job's measure and trainer would raise)."""

from __future__ import annotations

import io
import math
from dataclasses import replace
from typing import Any

import torch
from rich.console import Console

from autoaccel.budget import Budget
from autoaccel.config import TrainingConfig
from autoaccel.curves import CurvePoint, LossRun
from autoaccel.measure import Measurement
from autoaccel.pipeline import Job, PhaseCosts, faster_than_yours, guard_pick, plan_budget
from autoaccel.pipeline.guard import can_stand
from autoaccel.pipeline.reach import out_of_reach
from autoaccel.probe import probe_system
from autoaccel.scoring import Scoring
from autoaccel.search import SearchResult, TrialRecord, WorkloadFacts
from autoaccel.time_to_loss.guard import GuardVerdict

USER = TrainingConfig(batch_size=32, num_threads=1)


def curve(rate: float, batch: int, steps: int) -> Measurement:
    losses = tuple(2.0 / (1 + 0.05 * (i + 1)) for i in range(steps))
    samples = tuple(batch * (i + 1) for i in range(steps))
    return Measurement("ok", samples_per_s=rate, losses=losses, loss_samples=samples)


def record(n: int, m: Measurement, **knobs: object) -> TrialRecord:
    config = TrainingConfig(**{"num_threads": 1, **knobs})  # type: ignore[arg-type]
    return TrialRecord(n, {"n": n}, config, m, "x")


BASELINE = record(0, curve(100.0, 32, 200), batch_size=32)
BIG = record(1, curve(240.0, 256, 40), batch_size=256, precision="bf16-mixed")
BF16 = record(2, curve(170.0, 32, 300), batch_size=32, precision="bf16-mixed")
THREADS = record(3, curve(120.0, 32, 220), batch_size=32, num_threads=2, channels_last=True)


def guard(
    records: list[TrialRecord],
    best: TrialRecord | None = None,
    user: TrainingConfig = USER,
    baseline: TrialRecord = BASELINE,
) -> tuple[SearchResult, GuardVerdict, str]:
    """The guard stage on ``records`` (``best``: the final round's winner; default the
    fastest), with a job whose measure raises and no trainer: only curves decide."""

    def measure(config: TrainingConfig, prune: object = None) -> Measurement:
        raise AssertionError(f"the guard measured {config}: the trials' curves decide")

    facts = WorkloadFacts("m", 1, 4096, False, True, torch.device("cpu"), 0.5)
    job = Job(measure, user, baseline.measurement, facts, probe_system(), 5.0)  # no trainer
    best = best or max(records, key=lambda r: r.value)
    result = SearchResult(records, baseline, best, "done", 1.0, "s", "", len(records), 9)
    plan = plan_budget(180, 175, PhaseCosts(5.0, 3.0), guarded=True)
    console = Console(file=io.StringIO(), width=10_000)
    written, verdict = guard_pick(job, result, plan, Budget(180), console)
    return written, verdict, console.file.getvalue()  # type: ignore[attr-defined]


def test_a_pick_behind_on_its_curve_gives_way_to_one_that_keeps_pace() -> None:
    written, verdict, said = guard([BASELINE, BIG, BF16, THREADS])
    assert written.best is BF16  # the next fastest, and its curve kept pace
    assert not verdict.kept and verdict.how == "guarded" and verdict.decided_by == "trials"
    refusal, kept = verdict.line.split("; ")
    assert refusal.startswith(
        "batch 256, bf16-mixed: on the trials' own curves its training loss fell behind"
    )
    assert kept.startswith(
        "batch 32, bf16-mixed: on the trials' own curves its training loss kept pace"
    )
    assert kept.endswith(": that is kept")
    assert "batch 256, bf16-mixed: on the trials' own curves" in said


def test_a_refused_pick_gives_way_to_the_fastest_setup_with_your_steps() -> None:
    written, verdict, _ = guard([BASELINE, BIG, THREADS])
    assert written.best is THREADS and verdict.how == "unchanged"
    assert verdict.line.endswith(
        "batch 32, 32-true: its steps are yours, so it learns as yours: that is kept"
    )


def test_your_steps_at_full_precision_need_no_evidence_where_yours_are_mixed() -> None:
    """Launched at bf16 (the HF example's Accelerate config), 32-true at your batch ran
    1.13x your samples/s, and its 1.6 s trial curve read 0.71x your pace (each level in
    time, within the noise): it was refused and your setup kept. 32-true is the arithmetic
    bf16 approximates: such a step learns at least as yours, so no evidence is needed."""
    user = replace(USER, precision="bf16-mixed")
    yours = record(0, curve(100.0, 32, 200), batch_size=32, precision="bf16-mixed")
    losses = tuple(2.0 / (1 + 0.02 * (i + 1)) for i in range(120))  # read behind yours
    behind = replace(curve(113.0, 32, 120), losses=losses)
    full = record(1, behind, batch_size=32)
    written, verdict, _ = guard([yours, full], user=user, baseline=yours)
    assert written.best is full and verdict.how == "unchanged"
    assert verdict.line == (
        "batch 32, 32-true: its steps are yours at full precision (32-true, the arithmetic "
        "your bf16-mixed approximates), so it learns at least as yours"
    )
    # the other way round, bf16 where yours are 32-true, its curve decides (BF16's keeps pace)
    assert guard([BASELINE, BF16])[1].how != "unchanged"


def test_the_fastest_kept_when_its_curve_keeps_pace() -> None:
    written, verdict, _ = guard([BASELINE, BF16, THREADS])
    assert written.best is BF16 and verdict.kept


def test_your_setup_only_when_nothing_faster_passes() -> None:
    written, verdict, said = guard([BASELINE, BIG])
    assert written.best is BASELINE and not verdict.kept
    assert verdict.line.endswith("your setup is kept")
    assert said.rstrip().endswith("autoaccel: your setup is kept")
    alone, verdict, _ = guard([BASELINE])
    assert alone.best is BASELINE
    assert verdict.line == "no setup measured here was faster than yours: your setup is kept"


def test_faster_setups_are_ranked_once_each_fastest_first() -> None:
    again = record(4, curve(90.0, 256, 40), batch_size=256, precision="bf16-mixed")
    result = SearchResult([BASELINE, BIG, BF16, again], BASELINE, BIG, "done", 1.0, "s", "", 4, 9)
    assert faster_than_yours(result) == [BIG, BF16]


def test_only_setups_that_can_stand_go_to_the_final_round_and_its_winner_is_kept() -> None:
    """The final round re-measures what can stand (the big batch cannot, on its curve);
    when it puts the channels-last setup ahead of bf16, that is what the guard keeps."""
    result = SearchResult(
        [BASELINE, BIG, BF16, THREADS], BASELINE, THREADS, "done", 1.0, "s", "", 4, 9
    )
    assert [can_stand(r, result, USER) for r in (BIG, BF16, THREADS)] == [False, True, True]
    written, verdict, _ = guard([BASELINE, BIG, BF16, THREADS], best=THREADS)
    assert written.best is THREADS
    assert verdict.line.startswith("batch 256, bf16-mixed: on the trials' own curves")
    assert "batch 32, bf16-mixed" not in verdict.line  # it lost the final round, not refused


def test_a_setup_is_judged_on_its_first_trial_not_on_its_final_round_run() -> None:
    """The final round re-measures bf16's speed; that run's curve (here a slow one) does
    not overturn the verdict its search trial earned, which chose it for the round."""
    stalled = replace(curve(175.0, 32, 300), losses=(2.0,) * 300)  # a run that learned nothing
    again = TrialRecord(9, BF16.params, BF16.config, stalled, "final round")
    written, verdict, _ = guard([BASELINE, BF16, THREADS], best=again)
    assert written.best is again and verdict.kept and verdict.decided_by == "trials"


def test_the_final_rounds_winner_stays_though_the_machine_ran_slower_then() -> None:
    """bf16 ran 1.7x yours in its search trial. The final round, later, on a machine
    running at half its speed, measured it below your baseline's trial (seen in a 2m
    README job). It is still ranked by its search trial, a look like your baseline's, and
    written (its curve kept pace): whether it is faster is the confirmation pairs' to say,
    not a comparison of looks taken minutes apart. It used to drop out, and your setup
    was written."""
    slow_again = TrialRecord(9, BF16.params, BF16.config, curve(85.0, 32, 300), "final round")
    written, verdict, _ = guard([BASELINE, BIG, BF16, THREADS], best=slow_again)
    assert written.best is slow_again and verdict.decided_by == "trials"
    assert verdict.line.startswith("batch 256, bf16-mixed: on the trials' own curves")


class CountingTrainer:
    """Held-out loss falling as exp(-rate x seconds): your setup's rate 0.5, any other
    config's 0.05 (it falls behind); each run counted by config."""

    seed = 0
    scored_on = "stated curves"
    held_out = True

    def __init__(self) -> None:
        self.runs: list[TrainingConfig] = []

    def train_for(
        self,
        config: TrainingConfig,
        *,
        seconds: float,
        scoring: Scoring,
        on_eval: object = None,
        seed: int | None = None,
    ) -> LossRun:
        self.runs.append(config)
        rate = 0.5 if config == USER else 0.05
        points = tuple(
            CurvePoint(
                seconds * k / scoring.evals, k, math.exp(-rate * seconds * k / scoring.evals)
            )
            for k in range(1, scoring.evals + 1)
        )
        return LossRun(config, "ok", "", points, start_loss=1.0)


def guard_checking(
    trainer: CountingTrainer, records: list[TrialRecord]
) -> tuple[SearchResult, GuardVerdict]:
    """The guard stage of a 3m plan with check runs on ``trainer``: ``records[0]`` is your
    baseline, ``records[1]`` the search's pick."""
    baseline, best = records[0], records[1]
    facts = WorkloadFacts("m", 1, 4096, False, True, torch.device("cpu"), 0.5)
    job = Job(lambda *_: None, USER, baseline.measurement, facts, probe_system(), 5.0)  # type: ignore[arg-type]
    job = replace(job, trainer=trainer)
    result = SearchResult(records, baseline, best, "done", 1.0, "s", "", len(records), 9)
    plan = plan_budget(180, 175, PhaseCosts(5.0, 3.0), guarded=True)
    console = Console(file=io.StringIO(), width=10_000)
    return guard_pick(job, result, plan, Budget(180), console)


def test_a_setup_with_the_steps_of_one_refused_by_its_check_run_is_not_checked_again() -> None:
    """Two setups the trials' curves cannot decide (4 steps each) whose steps are the same
    (batch 2048 over 2 processes in bf16; one with a loader worker): the first's check run
    refuses it, and the second is refused on that run, not on one of its own (seen in a 3m
    tune of the HF example, where the two took both of its check runs)."""
    ddp = {"batch_size": 1024, "processes": 2, "strategy": "ddp", "precision": "bf16-mixed"}
    # fast enough that a 9 s check run holds 100 steps of batch 2048
    first = record(5, curve(24_000.0, 2048, 4), **ddp)
    same_steps = record(6, curve(23_000.0, 2048, 4), **ddp, num_workers=1)
    trainer = CountingTrainer()
    written, verdict = guard_checking(trainer, [BASELINE, first, same_steps])
    assert written.best is BASELINE and verdict.line.endswith("your setup is kept")
    assert trainer.runs == [USER, replace(first.config, lr_scaling="sqrt", warmup_steps=10)]
    assert verdict.line.startswith("batch 2048 (2 processes x 1024), bf16-mixed: its held-out")
    again = (  # named apart from the first by what differs
        "batch 2048 (2 processes x 1024), bf16-mixed (num_workers 1): the same steps as a "
        "setup checked above"
    )
    assert verdict.line.count(again) == 1


def test_a_setup_a_check_run_holds_few_steps_of_gets_none() -> None:
    """The trials' curves cannot decide batch 2048 over 2 processes (2.4x your samples/s)
    nor batch 256 (2x): a 9 s check run holds 10 steps of the first, 70 of the second. The
    check run goes to batch 256; batch 2048 is named as not checked, and why."""
    ddp = {"processes": 2, "strategy": "ddp", "precision": "bf16-mixed"}
    big = record(5, curve(2_400.0, 2048, 4), batch_size=1024, **ddp)
    mid = record(6, curve(2_000.0, 256, 4), batch_size=128, **ddp)
    trainer = CountingTrainer()
    baseline = replace(BASELINE, measurement=curve(1_000.0, 32, 200))
    written, verdict = guard_checking(trainer, [baseline, big, mid])
    assert [c.global_batch for c in trainer.runs] == [32, 256]  # yours, then batch 256
    assert written.best is baseline  # the stated trainer has batch 256 fall behind
    assert (
        "batch 2048 (2 processes x 1024), bf16-mixed: not checked: a 9 s check run holds 10 "
        "optimizer steps of it (of yours 281), fewer than the 50" in verdict.line
    )


# Batch 64 in bf16 at 2.4x your samples/s, a sample of it learning about half what one of
# yours does: its loss after n samples is yours after 1.3 / 2.4 x n.
WIDE = record(
    5,
    Measurement(
        "ok",
        samples_per_s=240.0,
        losses=tuple(2.0 / (1 + 0.05 * (2 * 1.3 / 2.4) * (i + 1)) for i in range(120)),
        loss_samples=tuple(64 * (i + 1) for i in range(120)),
    ),
    batch_size=64,
    precision="bf16-mixed",
)


def test_a_pick_that_keeps_pace_gives_way_to_a_slower_setup_that_learns_sooner() -> None:
    """Batch 64 in bf16 runs 2.4x your samples/s but learns less per sample: on its trial's
    curve it keeps pace, at 1.4x yours. Batch 32 in bf16 runs 1.7x, its steps learning as
    yours: it reaches your levels sooner, so it is written, and the line says why (the
    time-to-accuracy bench's CNN: 1.18x and 1.46x the default's time to 95%)."""
    written, verdict, said = guard([BASELINE, WIDE, BF16, THREADS])
    assert written.best is BF16 and not verdict.kept and verdict.decided_by == "trials"
    passed, kept = verdict.line.split("; ")
    assert passed.startswith("batch 64, bf16-mixed: on the trials' own curves its training loss")
    assert passed.endswith(
        "(1.38x your pace overall), but another setup reaches your levels sooner (1.70x your pace)"
    )
    assert kept.startswith("batch 32, bf16-mixed: on the trials' own curves") and kept.endswith(
        "(1.70x your pace overall): that is kept"
    )
    assert said.rstrip().endswith("that is kept")


def test_a_setup_with_your_steps_counts_at_its_samples_per_s() -> None:
    """Refused bigger batches aside, batch 64 keeps pace at 1.38x yours; channels-last at
    your batch runs 1.6x your samples/s and learns as yours: it is written."""
    layout = record(6, curve(160.0, 32, 220), batch_size=32, channels_last=True)
    written, verdict, _ = guard([BASELINE, BIG, WIDE, layout])
    assert written.best is layout and verdict.how == "unchanged"
    assert verdict.line.startswith("batch 256, bf16-mixed: on the trials' own curves")
    assert verdict.line.endswith(
        "batch 32, 32-true: its steps are yours, so it learns as yours (1.60x your samples/s): "
        "that is kept"
    )
    # Sooner than the pick, but not by more than PACE_MARGIN (1.38x your pace): it stays.
    close = record(7, curve(150.0, 32, 220), batch_size=32, channels_last=True)
    written, verdict, _ = guard([BASELINE, WIDE, close])
    assert written.best is WIDE and verdict.kept


def test_a_setup_the_final_round_put_behind_its_winner_can_be_the_sooner_one() -> None:
    """The final round put batch 64 ahead of bf16 at your batch (both could stand). Batch
    64 keeps pace at 1.38x; bf16, ranked faster in the search but not the winner, reaches
    your levels at 1.7x: it is written (a README job's final round made batch 128 its
    winner over batch 64, then only slower setups were compared with it)."""
    quick = record(8, curve(250.0, 32, 300), batch_size=32, precision="bf16-mixed")
    written, verdict, _ = guard([BASELINE, WIDE, quick], best=WIDE)
    assert written.best is quick and not verdict.kept
    assert verdict.line.endswith("(2.50x your pace overall): that is kept")


def test_the_search_is_told_what_the_guard_could_never_write() -> None:
    """Before a setup is measured: at 3x the best samples/s so far, would a 9 s check run
    (3m) or its trial's curve hold enough of its steps for the guard to write it? Batch
    1024 would hold 26 check-run steps at 3,000 samples/s: not run. At 6,000 it would hold
    52, and batch 512 at 3,000 holds 52: both run. Your steps never need the guard."""
    baseline = replace(BASELINE, measurement=curve(1_000.0, 32, 50))  # a 1.6 s trial curve
    facts = WorkloadFacts("m", 1, 4096, False, True, torch.device("cpu"), 0.5)
    job = Job(lambda *_: None, USER, baseline.measurement, facts, probe_system(), 5.0)  # type: ignore[arg-type]
    why = out_of_reach(replace(job, trainer=CountingTrainer()), Budget(180))  # type: ignore[arg-type]
    big, mid = replace(USER, batch_size=1024), replace(USER, batch_size=512)
    assert why(big, baseline) == (
        "not run: even at 3x the best samples/s so far, a 9 s check run holds 26 optimizer "
        "steps of it (of yours 281), fewer than the 50 that could show it learns as yours, "
        "and its trial's curve would hold too few to decide"
    )
    faster = replace(baseline, measurement=curve(2_000.0, 32, 50))
    assert why(big, faster) is None and why(mid, baseline) is None
    two = replace(USER, batch_size=16, processes=2, strategy="ddp")  # your steps, split
    assert why(two, baseline) is None
    assert out_of_reach(job, Budget(180))(big, baseline) is None  # no check runs to draw


class ClockedTrainer(CountingTrainer):
    """Each run takes its seconds on ``clock``; batches up to 64 learn as yours, larger ones
    fall behind (as every larger batch the stored benches' check runs checked did)."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self.clock = clock

    def train_for(self, config: TrainingConfig, *, seconds: float, **kwargs: Any) -> LossRun:
        self.clock[0] += seconds
        run = super().train_for(
            USER if config.global_batch <= 64 else config, seconds=seconds, **kwargs
        )
        self.runs[-1] = config
        return replace(run, config=config)


def test_time_left_over_checks_the_setup_nearest_your_batch_first() -> None:
    """A 3m plan keeps no time for check runs; what the end phases leave over holds one
    pair. Batch 256 over 2 processes (2x your samples/s) and batch 64 (1.4x): the trials'
    curves decide neither. The pair goes to batch 64, which keeps pace, and it is written
    (fastest first, it went to batch 256, which fell behind, and your setup was written)."""
    clock = [0.0]
    trainer = ClockedTrainer(clock)
    baseline = replace(BASELINE, measurement=curve(1_000.0, 32, 200))
    big = record(5, curve(2_000.0, 256, 4), batch_size=128, processes=2, strategy="ddp")
    near = record(6, curve(1_400.0, 64, 4), batch_size=64)
    facts = WorkloadFacts("m", 1, 4096, False, True, torch.device("cpu"), 0.5)
    job = Job(lambda *_: None, USER, baseline.measurement, facts, probe_system(), 5.0)  # type: ignore[arg-type]
    job = replace(job, trainer=trainer)
    result = SearchResult([baseline, big, near], baseline, big, "done", 1.0, "s", "", 3, 9)
    plan = plan_budget(180, 175, PhaseCosts(5.0, 3.0), guarded=True)
    assert not plan.check_runs
    budget = Budget(180, clock=lambda: clock[0])
    one_pair = 2 * plan.costs.check_run_s(180) + 2 * 5.0 + 1  # the pair, a confirmation pair
    clock[0] = 180 - one_pair
    console = Console(file=io.StringIO(), width=10_000)
    written, verdict = guard_pick(job, result, plan, budget, console)
    assert [c.global_batch for c in trainer.runs] == [32, 64]  # yours, then batch 64
    assert written.best is near and verdict.how == "measured"
    assert "batch 64, 32-true: its held-out loss kept pace" in verdict.line


def test_setups_with_the_same_steps_are_named_apart() -> None:
    """Batch 256 in bf16 with 0 and with 1 loader worker: each falls behind on its own
    trial's curve, and the line says which is which (it named both alike)."""
    workers = record(
        7, curve(230.0, 256, 40), batch_size=256, precision="bf16-mixed", num_workers=1
    )
    written, verdict, _ = guard([BASELINE, BIG, workers, THREADS])
    assert written.best is THREADS
    first, second = verdict.line.split("; ")[:2]
    assert first.startswith("batch 256, bf16-mixed: on the trials' own curves")
    assert second.startswith("batch 256, bf16-mixed (num_workers 1): on the trials' own curves")
