"""When a run is scored and when it stops: the one rule, checked with an injected clock."""

from __future__ import annotations

import math

from autoaccel.curves import Level
from autoaccel.scoring import Scorer, Scoring
from autoaccel.states import Outcome


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_points_fall_at_even_intervals_of_training_time_with_scoring_time_excluded() -> None:
    clock = Clock()
    scorer = Scorer(Scoring(evals=4), seconds=8.0, clock=clock)
    clock.now = 1.9
    assert not scorer.due(1.0, steps=1)
    clock.now = 2.0
    assert scorer.due(0.9, steps=2)
    trained = scorer.pause()
    clock.now = 5.0  # three seconds of scoring: not training time
    assert scorer.record(0.8, None, steps=2, trained_s=trained) is None
    assert scorer.curve[-1].seconds == 2.0
    clock.now = 5.9  # 2.9 s of training
    assert not scorer.due(0.7, steps=3)
    clock.now = 6.0  # 3.0 s of training... the next point is due at 4.0
    assert not scorer.due(0.7, steps=4)
    clock.now = 7.0
    assert scorer.due(0.6, steps=5)
    assert scorer.trained_s() == 4.0


def test_the_last_point_ends_the_run() -> None:
    clock = Clock()
    scorer = Scorer(Scoring(evals=2, held_out=False), seconds=2.0, clock=clock)
    for step, t in enumerate((1.0, 2.0), start=1):
        clock.now = t
        assert scorer.due(1.0 / step, steps=step)
        stop = scorer.record(*scorer.training_loss(), steps=step)
    assert stop == (Outcome.OK, "")
    assert [p.loss for p in scorer.curve] == [1.0, 0.5]


def test_training_loss_points_average_the_steps_since_the_last_point() -> None:
    clock = Clock()
    scorer = Scorer(Scoring(evals=10, held_out=False), seconds=10.0, clock=clock)
    for loss in (4.0, 2.0, 3.0):
        assert not scorer.due(loss, steps=1)
    assert scorer.start == (4.0, None)  # the untrained model's loss, at 0 s
    assert scorer.training_loss() == (3.0, None)


def test_a_reached_level_stops_the_run_as_done() -> None:
    scorer = Scorer(Scoring(evals=10, stop_at=Level(0.5, 3.0)), seconds=10.0, clock=Clock())
    assert scorer.record(0.7, None, steps=1) is None
    outcome, message = scorer.record(0.49, None, steps=2) or (None, "")
    assert outcome is Outcome.OK
    assert message == "reached 0.5 at evaluation 2 of 10"


def test_a_loss_that_is_not_finite_is_a_diverged_run() -> None:
    scorer = Scorer(Scoring(evals=10), seconds=10.0, clock=Clock())
    scorer.due(math.inf, steps=7)
    assert scorer.record(0.5, None, steps=7) == (
        Outcome.DIVERGED,
        "the loss became inf by step 7",
    )
    scorer = Scorer(Scoring(evals=10), seconds=10.0, clock=Clock())
    scorer.due(1.0, steps=3)
    assert scorer.record(math.nan, None, steps=3) == (
        Outcome.DIVERGED,
        "the loss became nan by step 3",
    )


def test_max_steps_scores_once_at_that_step() -> None:
    scorer = Scorer(Scoring(evals=12, max_steps=5), seconds=100.0, clock=Clock())
    assert not scorer.due(1.0, steps=4)
    assert scorer.due(1.0, steps=5)
    assert scorer.record(0.3, None, steps=5) == (Outcome.OK, "")


def test_a_scoring_survives_its_trip_through_a_trial_spec() -> None:
    scoring = Scoring(7, None, Level(0.9, 2.5, metric=True, higher=True), (2.3, 0.1), True)
    assert Scoring.from_dict(scoring.to_dict()) == scoring
