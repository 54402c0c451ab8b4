from __future__ import annotations

import math

import pytest
import torch

from autoaccel.measure import (
    Meter,
    MeterSettings,
    PruneBelow,
    PruneTrial,
    TrialTimeout,
    classify_failure,
    process_rss_bytes,
)


class FakeClock:
    """Time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def step(
    meter: Meter,
    clock: FakeClock,
    *,
    wait: float,
    compute: float,
    samples: int = 10,
    loss: float | None = 1.0,
) -> None:
    meter.fetch_start()
    clock.advance(wait)
    meter.fetch_end(samples)
    clock.advance(compute)
    meter.step_end(loss)


SETTINGS = MeterSettings(
    min_warmup_steps=3,
    settle_steps=3,
    settle_tolerance=0.2,
    max_warmup_s=50,
    window_s=1.0,
    min_window_steps=5,
    blocks=5,
)


def test_warmup_ends_when_step_times_settle_not_after_a_count() -> None:
    clock = FakeClock()
    meter = Meter(SETTINGS, clock=clock)
    for seconds in (2.0, 1.0, 0.5, 0.3):  # worker start, allocator, first calls
        step(meter, clock, wait=0.0, compute=seconds)
    assert not meter._in_window
    # Binary fractions keep the fake clock exact: steps of 1/8 s, a quarter waiting.
    for _ in range(3):  # three steps that agree within 20%
        step(meter, clock, wait=0.03125, compute=0.09375)
    assert meter._in_window
    while not meter.done:
        step(meter, clock, wait=0.03125, compute=0.09375)
    m = meter.result()
    assert m.warmup_steps == 7 and m.warmup_settled
    assert m.warmup_s == pytest.approx(2.0 + 1.0 + 0.5 + 0.3 + 3 * 0.125)
    assert m.first_step_s == pytest.approx(2.0)  # one-time costs, measured apart
    assert m.window_steps == 8  # 1.0 s of 1/8 s steps
    assert m.samples_per_s == pytest.approx(80.0)
    assert m.data_wait_s == pytest.approx(0.03125) and m.compute_s == pytest.approx(0.09375)
    assert m.data_wait_fraction == pytest.approx(0.25)
    assert m.samples == 80


def test_unsettled_warmup_is_reported() -> None:
    clock = FakeClock()
    meter = Meter(MeterSettings(max_warmup_s=1.0, window_s=0.5, min_window_steps=2), clock=clock)
    durations = [0.1, 0.3, 0.1, 0.3, 0.1, 0.3, 0.1, 0.3, 0.1, 0.3]
    i = 0
    while not meter.done:
        step(meter, clock, wait=0.0, compute=durations[i % len(durations)])
        i += 1
    m = meter.result()
    assert not m.warmup_settled
    assert any("did not settle" in note for note in m.notes)


def test_window_is_bounded_by_steps_too() -> None:
    clock = FakeClock()
    settings = MeterSettings(
        min_warmup_steps=1, settle_steps=1, window_s=1e9, max_window_steps=7, min_window_steps=1
    )
    meter = Meter(settings, clock=clock)
    while not meter.done:
        step(meter, clock, wait=0.0, compute=0.01)
    assert meter.result().window_steps == 7


def test_median_and_spread_over_blocks() -> None:
    clock = FakeClock()
    meter = Meter(
        MeterSettings(
            min_warmup_steps=1, settle_steps=1, window_s=0.0, min_window_steps=10, blocks=5
        ),
        clock=clock,
    )
    step(meter, clock, wait=0, compute=0.1)  # warm-up
    for seconds in (0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1):
        step(meter, clock, wait=0, compute=seconds)
    m = meter.result()
    assert m.block_samples_per_s == pytest.approx((100, 100, 50, 100, 100))
    assert m.samples_per_s == pytest.approx(100)
    assert (m.samples_per_s_min, m.samples_per_s_max) == pytest.approx((50, 100))
    assert m.spread == pytest.approx(0.5)


def test_cuda_style_sync_only_at_window_edges() -> None:
    clock = FakeClock()
    syncs: list[int] = []
    meter = Meter(SETTINGS, clock=clock, sync=lambda: syncs.append(len(meter._window)))
    while not meter._in_window:
        step(meter, clock, wait=0.0, compute=0.1)
    warmup_syncs = len(syncs)
    assert warmup_syncs == len(meter._warmup)  # one per warm-up step
    while not meter.done:
        step(meter, clock, wait=0.0, compute=0.1)
    assert len(syncs) == warmup_syncs + 1  # inside the window: only at its end


def test_a_nan_loss_is_divergence() -> None:
    clock = FakeClock()
    meter = Meter(SETTINGS, clock=clock)
    step(meter, clock, wait=0, compute=0.1, loss=2.0)
    with pytest.raises(FloatingPointError, match=r"the loss became nan \(diverged\)"):
        step(meter, clock, wait=0, compute=0.1, loss=math.nan)
    assert classify_failure(FloatingPointError("the loss became nan"))[0] == "diverged"


def test_nan_from_the_first_step_is_not_called_divergence() -> None:
    clock = FakeClock()
    meter = Meter(SETTINGS, clock=clock)
    with pytest.raises(FloatingPointError, match="from the very first step, before any update"):
        step(meter, clock, wait=0, compute=0.1, loss=math.nan)


def test_nan_inside_the_window_is_found_at_the_end() -> None:
    clock = FakeClock()
    meter = Meter(SETTINGS, clock=clock)
    while not meter._in_window:
        step(meter, clock, wait=0, compute=0.1)
    step(meter, clock, wait=0, compute=0.1, loss=torch.tensor(float("inf")))
    while not meter.done:
        step(meter, clock, wait=0, compute=0.1, loss=torch.tensor(1.0))
    with pytest.raises(FloatingPointError, match="inf"):
        meter.result()


def test_clearly_slower_trials_are_pruned() -> None:
    clock = FakeClock()
    seen: list[tuple[float, float]] = []

    def prune(done: float, running: float) -> bool:
        seen.append((done, running))
        return done > 0 and running < 500

    meter = Meter(SETTINGS, clock=clock, prune=prune)
    with pytest.raises(PruneTrial, match="stopped early: 100 samples/s") as caught:
        while not meter.done:
            step(meter, clock, wait=0, compute=0.1)
    assert caught.value.samples_per_s == pytest.approx(100)
    window_calls = [c for c in seen if c[0] > 0]
    assert window_calls and 0 < window_calls[0][0] < 1


def test_hopeless_trials_stop_in_warm_up() -> None:
    clock = FakeClock()
    meter = Meter(SETTINGS, clock=clock, prune=PruneBelow(1000.0))
    step(meter, clock, wait=0, compute=5.0)  # the first step pays one-off costs: never judged
    with pytest.raises(PruneTrial, match=r"stopped in warm-up: 100 samples/s"):
        step(meter, clock, wait=0, compute=0.1)  # 100/s: under a quarter of the 1000/s floor


def test_prune_below_rules() -> None:
    prune = PruneBelow(1000.0)
    assert prune(0.0, 249) and not prune(0.0, 251)  # warm-up: only under a quarter
    assert not prune(0.1, 10)  # too little of the window measured to judge
    assert prune(0.5, 999) and not prune(0.5, 1001)
    assert not PruneBelow(0.0)(0.5, 1)  # no best yet: never prune


def test_a_trial_past_its_time_limit_stops() -> None:
    clock = FakeClock()
    meter = Meter(MeterSettings(max_trial_s=1.0), clock=clock)
    with pytest.raises(TrialTimeout, match=r"ran past 1 s \(3 steps done\)"):
        for _ in range(10):
            step(meter, clock, wait=0, compute=0.4)


def test_memory_is_sampled_and_peak_kept() -> None:
    clock = FakeClock()
    readings = iter([100, 300, 200] + [150] * 100)
    meter = Meter(
        MeterSettings(
            min_warmup_steps=1,
            settle_steps=1,
            window_s=0.0,
            min_window_steps=3,
            memory_sample_s=0.0,
        ),
        clock=clock,
        memory=lambda: next(readings),
    )
    while not meter.done:
        step(meter, clock, wait=0, compute=0.1)
    assert meter.result().peak_memory_bytes == 300


def test_real_cpu_out_of_memory_is_classified() -> None:
    try:
        torch.empty(2**62, dtype=torch.uint8)
    except RuntimeError as error:
        outcome, message = classify_failure(error)
    assert outcome == "oom"
    assert "can't allocate memory" in message or "out of memory" in message.lower()


def test_other_errors_keep_their_type() -> None:
    assert classify_failure(ValueError("bad shape\nmore")) == ("error", "ValueError: bad shape")


def test_rss_includes_this_process() -> None:
    assert process_rss_bytes() > 10 * 2**20
