"""The final round and the paired confirmation."""

from __future__ import annotations

import pytest

from autoaccel.budget import Budget
from autoaccel.config import TrainingConfig
from autoaccel.confirm import Speedup, confirm, final_round
from autoaccel.measure import Measurement
from autoaccel.search import TrialRecord


def test_confirm_interleaves_and_pairs() -> None:
    order: list[str] = []

    def measure(config: object) -> Measurement:
        name = "A" if config == "base" else "B"
        order.append(name)
        drift = 1 + 0.1 * len(order)  # the machine slows down over time
        rate = (100 if name == "A" else 200) / drift
        return Measurement(outcome="ok", samples_per_s=rate)

    speedup = confirm(measure, "base", "best", pairs=3)  # type: ignore[arg-type]
    assert order == ["A", "B", "A", "B", "A", "B"]
    assert speedup.median == pytest.approx(2 * (1 + 0.1 * 3) / (1 + 0.1 * 4))


def pairs_in(seconds: float, *, trial_s: float, estimate_s: float) -> tuple[int, float]:
    """Pairs confirmed in a ``seconds`` budget, each trial taking ``trial_s`` against an
    estimate of ``estimate_s``, 6 asked; and the seconds spent."""
    now = [0.0]
    budget = Budget(seconds, clock=lambda: now[0])

    def measure(config: object) -> Measurement:
        now[0] += trial_s
        return Measurement(outcome="ok", samples_per_s=100.0 if config == "base" else 150.0)

    speedup = confirm(measure, "base", "best", pairs=6, budget=budget, trial_s=estimate_s)  # type: ignore[arg-type]
    return len(speedup.ratios), now[0]


def test_pairs_go_on_while_a_measured_pair_still_fits() -> None:
    """The estimate (2 s a trial) would fit 6 pairs in 30 s, but each trial really takes
    5 s: after the first pair shows that, pairs stop when the next would not fit."""
    assert pairs_in(30, trial_s=5.0, estimate_s=2.0) == (3, 30.0)  # 3 pairs of 10 s, no more


def test_pairs_cheaper_than_the_estimate_go_on_past_it() -> None:
    """The estimate (6 s a trial) fits 2 pairs in 30 s, but each trial takes 3 s: pairs go
    on while a measured pair still fits, up to the 6 asked (a 2m README job stopped at its
    estimate's 3 pairs with 14 s unused, a pair taking about 8 s)."""
    assert pairs_in(30, trial_s=3.0, estimate_s=6.0) == (5, 30.0)  # 5 pairs of 6 s


def test_the_final_round_keeps_the_best_median_not_the_lucky_trial() -> None:
    """Trial 1 was measured once in a quiet moment; re-measured, trial 2 is faster."""
    true_rate = {16: 90.0, 32: 99.0, 64: 85.0, 128: 60.0}
    first = {16: 120.0, 32: 100.0, 64: 95.0, 128: 0.0}
    records = [
        TrialRecord(
            n,
            {},
            TrainingConfig(batch_size=b),
            Measurement(outcome="ok" if b != 128 else "oom", samples_per_s=first[b], message=""),
            "sampler",
        )
        for n, b in enumerate(true_rate, start=1)
    ]
    order: list[int] = []

    def measure(config: TrainingConfig) -> Measurement:
        order.append(config.batch_size)
        return Measurement(outcome="ok", samples_per_s=true_rate[config.batch_size])

    winner, evidence = final_round(measure, records, finalists=3, rounds=2)
    assert order == [16, 32, 64, 16, 32, 64]  # in turn; the failed config is not a finalist
    assert winner.number == 2 and winner.measurement.samples_per_s == 99.0
    assert evidence is not None and "trial 2 kept" in evidence
    alone, none = final_round(measure, records[:1])
    assert alone is records[0] and none is None
    order.clear()
    capped, none = final_round(measure, records, finalists=3, rounds=2, max_measurements=5)
    assert order == [16, 32, 64]  # 5 trials left: one round fits
    assert capped.number == 2  # one round, and the lucky first 120 does not count
    order.clear()
    assert final_round(measure, records, max_measurements=2)[1] is None and not order


def test_beside_two_re_measurements_the_search_trial_breaks_a_near_tie() -> None:
    """Figures like the README job's: batch 64 is steadily faster, but its two looks in the
    final round happen to average below batch 32's (one lucky 3,032). The median of each
    finalist's three looks (search trial included) keeps batch 64; the re-measurements
    alone would have written batch 32."""
    first = {64: 2933.0, 32: 2133.0}
    again = {64: iter([2757.0, 3050.0]), 32: iter([3032.0, 2800.0])}
    records = [
        TrialRecord(n, {}, TrainingConfig(batch_size=b), Measurement("ok", samples_per_s=r), "s")
        for n, (b, r) in enumerate(first.items(), start=4)
    ]

    def measure(config: TrainingConfig) -> Measurement:
        return Measurement(outcome="ok", samples_per_s=next(again[config.batch_size]))

    winner, evidence = final_round(measure, records, finalists=2, rounds=2)
    assert winner.config.batch_size == 64 and winner.measurement.samples_per_s == 2933.0
    assert evidence is not None
    assert "trial 4: median 2,933 samples/s of 3 with its search trial" in evidence


def test_a_speedup_with_no_pairs_says_it_was_not_confirmed() -> None:
    """A budget spent before the confirmation leaves no pairs: no '1.00x' is shown as if
    it had been measured."""
    assert str(Speedup((), (), ())) == "not confirmed (no pairs ran)"
    assert str(Speedup((1.2, 1.4), (1.0, 1.0), (1.2, 1.4))) == "1.30x (min 1.20, max 1.40, 2 pairs)"


def test_a_pick_that_is_your_setup_claims_no_speedup() -> None:
    kept = Speedup((), (), (), yours_kept=True)
    assert str(kept) == "1.00x (your setup kept)" and kept.median == 1.0


def test_a_second_round_runs_only_while_it_fits_at_the_cost_the_first_measured() -> None:
    """Planned at 5 s a look, two rounds of 3 finalists and 3 pairs (30 s kept) fit in
    66 s; each look really takes 7 s (the README job's looks ran above the baseline's
    estimate, and the confirmation got 2 pairs of its 3). After round 1 (21 s), round 2
    (21 s) and the pairs at that cost (42 s) no longer fit: it is not run."""
    now = [0.0]
    budget = Budget(66, clock=lambda: now[0])
    records = [
        TrialRecord(n, {}, TrainingConfig(batch_size=b), Measurement("ok", samples_per_s=r), "s")
        for n, (b, r) in enumerate({16: 90.0, 32: 100.0, 64: 95.0}.items(), start=1)
    ]

    def measure(config: TrainingConfig) -> Measurement:
        now[0] += 7.0
        return Measurement(outcome="ok", samples_per_s=100.0)

    final_round(measure, records, finalists=3, rounds=2, budget=budget, trial_s=5.0, keep_s=30.0)
    assert now[0] == 21.0  # one round: 45 s left hold the 3 pairs at 7 s a look (42 s)
    now[0] = 0.0
    roomy = Budget(120, clock=lambda: now[0])
    final_round(measure, records, finalists=3, rounds=2, budget=roomy, trial_s=5.0, keep_s=30.0)
    assert now[0] == 42.0  # with room for both, both rounds run
