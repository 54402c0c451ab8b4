"""Convergence evidence from the search's own trials: their loss curves, compared."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest
import torch
from models import learnable, mlp

from autoaccel.config import TrainingConfig
from autoaccel.measure import Measurement, MeterSettings, compact_curve
from autoaccel.runtime.data import describe_data
from autoaccel.time_to_loss.trial_curves import curve_verdict, trained_s, trial_run
from autoaccel.trials.in_process import run_trial
from autoaccel.trials.workload import make_workload

USER = TrainingConfig(batch_size=32)


def trial(rate: float, batch: int, steps: int, per_step: float = 0.05) -> Measurement:
    """A trial whose loss falls with each step as 2 / (1 + per_step x step)."""
    losses = tuple(2.0 / (1 + per_step * (i + 1)) for i in range(steps))
    samples = tuple(batch * (i + 1) for i in range(steps))
    return Measurement("ok", samples_per_s=rate, losses=losses, loss_samples=samples)


def test_a_pick_with_your_steps_per_second_ahead_keeps_pace() -> None:
    yours = trial(100.0, 32, 200)
    bf16 = trial(170.0, 32, 300)  # the same steps, 1.7x the samples/s
    verdict = curve_verdict(bf16, replace(USER, precision="bf16-mixed"), yours, USER)
    assert verdict.kept and verdict.how == "guarded" and verdict.decided_by == "trials"
    assert verdict.pace == pytest.approx(1 / 1.7, rel=0.15)
    assert "kept pace with yours" in verdict.line


def test_a_larger_batch_with_fewer_steps_per_second_falls_behind() -> None:
    """8x the batch at 2.4x the samples/s: 0.3x the steps per second, each no better."""
    yours = trial(100.0, 32, 200)
    big = trial(240.0, 256, 40)
    verdict = curve_verdict(big, TrainingConfig(batch_size=256), yours, USER)
    assert not verdict.kept and verdict.decided_by == "trials"
    assert verdict.worst is not None and verdict.worst > 1.1
    assert verdict.line.startswith("on the trials' own curves its training loss fell behind")


def test_curves_too_short_or_flat_decide_nothing() -> None:
    short = curve_verdict(trial(240.0, 256, 6), USER, trial(100.0, 32, 200), USER)
    assert short.how == "unchecked" and short.decided_by == ""
    assert short.line.startswith("the trials' curves are too short to compare (6 steps")
    # Enough steps each, but one of the pick's steps holds more samples than five of your
    # trial's windows (seen in CI: 2 processes x 512 against a short baseline).
    huge = curve_verdict(trial(4000.0, 1024, 40), USER, trial(100.0, 32, 30), USER)
    assert huge.how == "unchecked" and "against steps of up to 1,024" in huge.line
    flat = replace(trial(100.0, 32, 200), losses=(2.0,) * 200)
    verdict = curve_verdict(trial(170.0, 32, 300), USER, flat, USER)
    assert verdict.how == "unchecked"
    assert verdict.line.startswith("your training loss fell 0% in the")


def noisy(rate: float, steps: int, noise: float) -> Measurement:
    """A binary classifier's first steps at batch 32: its loss falls 10% from ln 2, each
    step's loss off that by +-``noise`` in turn (the HF example's first 1.7 s)."""
    losses = tuple(math.log(2) * (1 - 0.1 * i / steps) + noise * (-1) ** i for i in range(steps))
    samples = tuple(32 * (i + 1) for i in range(steps))
    return Measurement("ok", samples_per_s=rate, losses=losses, loss_samples=samples)


def test_a_fall_within_twice_the_noise_decides_nothing() -> None:
    """Your loss fell 20% (more than the 5% asked), but by little more than the noise of
    the curve's stretches: every level is "reached within the noise" and the pace read is
    noise (here 1.03x for a pick that learns as yours at 1.4x your samples/s; the HF
    example's batch 64 read 1.65x on such curves, 0.87-1.18x over 9 s on 4 data orders).
    With a tenth of the noise, the curves decide."""
    pick = noisy(140.0, 280, 0.045)  # 1.4x your samples/s, learning as yours per sample
    verdict = curve_verdict(pick, replace(USER, batch_size=64), noisy(100.0, 200, 0.045), USER)
    assert verdict.how == "unchecked" and not verdict.kept
    assert re.fullmatch(
        r"your training loss fell 0\.\d+ in the 64\.0 s both trials trained, 1\.\dx the noise "
        r"of its stretches \(0\.\d+; 2x needed to tell the curves apart\)",
        verdict.line,
    ), verdict.line
    calm = curve_verdict(
        noisy(140.0, 280, 0.005), replace(USER, batch_size=64), noisy(100.0, 200, 0.005), USER
    )
    assert calm.how == "guarded" and calm.decided_by == "trials"


def test_the_curve_is_a_sliding_mean_over_a_window_of_samples() -> None:
    m = trial(100.0, 32, 100)
    run = trial_run(m, USER, horizon_s=trained_s(m), window=320, every=320)
    assert len(run.curve) == 10 and run.curve[-1].seconds == pytest.approx(32.0)
    assert run.curve[0].loss == pytest.approx(sum(m.losses[:10]) / 10)
    assert all(a.loss > b.loss for a, b in zip(run.curve, run.curve[1:], strict=False))


def test_a_stored_compacted_curve_decides_as_the_whole_one() -> None:
    yours, big = trial(100.0, 32, 1000, 0.01), trial(240.0, 256, 300, 0.01)
    whole = curve_verdict(big, USER, yours, USER)
    stored = [
        replace(
            m,
            **dict(
                zip(
                    ("losses", "loss_samples"), compact_curve(m.losses, m.loss_samples), strict=True
                )
            ),
        )
        for m in (big, yours)
    ]
    assert len(stored[1].losses) <= 128
    again = curve_verdict(stored[0], USER, stored[1], USER)
    assert again.kept == whole.kept and again.pace == pytest.approx(whole.pace, rel=0.2)


def test_real_trials_record_their_curves_and_decide() -> None:
    """Two real in-process trials of one model from the same state and order: each carries
    its loss curve; the comparison decides on them (which way is the machine's to say)."""
    model = mlp()
    spec = describe_data(learnable(4096), loader_kwargs={"batch_size": 32, "shuffle": True})
    workload = make_workload(
        model, spec, loss_fn=None, optimizer=torch.optim.SGD(model.parameters(), lr=0.1)
    )
    # Enough steps to decide on however busy the machine is: the window counts steps too.
    settings = MeterSettings(window_s=0.5, min_window_steps=60, max_warmup_s=1.0)
    # One thread: two threads beside another test worker collapse 10-30x at random, and the
    # two trials then train at paces too far apart to share a horizon of many steps.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yours = run_trial(workload, USER, settings)
        again = run_trial(workload, USER, settings)
    finally:
        torch.set_num_threads(threads)
    assert yours.ok and len(yours.loss_samples) == len(yours.losses) >= 10
    assert list(yours.loss_samples) == sorted(yours.loss_samples)
    assert yours.loss_samples[0] == 32  # the first step's batch
    # The same state and data order: the first losses agree to rounding.
    assert again.losses[:5] == pytest.approx(yours.losses[:5], rel=1e-4)
    verdict = curve_verdict(again, USER, yours, USER)
    assert verdict.decided_by == "trials", verdict.line
    assert math.isfinite(verdict.pace or math.inf)
