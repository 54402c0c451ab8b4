"""When a training run is scored and when it stops: the one rule for every run that draws a
loss curve, in-process (``advise()``) or inside a script (``autoaccel tune``).

A run trains for a stretch of *training* time (time spent scoring is not counted) and is
scored ``evals`` times at even intervals of it: on held-out data (the caller's validation
set, or the script's ``evaluate`` hook), or, where there is none, on the mean training loss
since the last point. It stops early once a point reaches ``stop_at``, or when the loss
stops being finite.

Example:
    >>> now = [0.0]
    >>> scorer = Scorer(Scoring(evals=2, held_out=False), seconds=10, clock=lambda: now[0])
    >>> now[0] = 4.0; scorer.due(2.0, steps=1)
    False
    >>> now[0] = 5.0; scorer.due(1.0, steps=2)
    True
    >>> scorer.record(*scorer.training_loss(), steps=2) is None, scorer.curve[-1].loss
    (True, 1.5)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from autoaccel.curves import CurvePoint, Level
from autoaccel.states import Outcome

__all__ = ["EVALS", "Scorer", "Scoring"]

EVALS = 12  # evaluations per run (the pruner's rungs sit on them)


@dataclass(frozen=True)
class Scoring:
    """How often a run is scored, on what, and when it stops early.

    Args:
        evals: Evaluations at even intervals of the training time.
        max_steps: Stop after this many optimizer steps instead (then scored once).
        stop_at: Stop (as done, "ok") once an evaluation reaches this level.
        start: The untrained model's (loss, metric), when the caller knows it (the same
            for every candidate); the run's curve starts there at 0 s.
        held_out: Score on held-out data; False: on the mean training loss since the last
            point (what a script without an ``evaluate`` hook can give).
    """

    evals: int = EVALS
    max_steps: int | None = None
    stop_at: Level | None = None
    start: tuple[float | None, float | None] | None = None
    held_out: bool = True

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready data (for a script trial's spec)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scoring:
        stop_at = data.get("stop_at")
        start = data.get("start")
        return cls(
            evals=int(data["evals"]),
            max_steps=data.get("max_steps"),
            stop_at=Level(**stop_at) if stop_at else None,
            start=(start[0], start[1]) if start else None,
            held_out=bool(data.get("held_out", True)),
        )


class Scorer:
    """One run's clock and curve: says when a point is due, records it, says when to stop.

    Args:
        scoring: How often and on what.
        seconds: Training seconds the run gets.
        clock: Seconds as a float; injected in tests.
    """

    def __init__(
        self,
        scoring: Scoring,
        seconds: float,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.scoring = scoring
        self.seconds = seconds
        self.clock = clock
        self.began = clock()
        self.paused = 0.0  # seconds spent scoring, not training
        self._paused_at = self.began  # when the clock last stopped for scoring
        self.curve: list[CurvePoint] = []
        self.start = scoring.start
        self.evals = scoring.evals
        self.last_loss: float | None = None  # the last step's training loss
        self._sum, self._count = 0.0, 0  # training losses since the last point

    @property
    def k(self) -> int:
        """Points recorded so far."""
        return len(self.curve)

    def trained_s(self) -> float:
        return self.clock() - self.began - self.paused

    def due(self, loss: float, *, steps: int) -> bool:
        """After a step with training ``loss`` (``steps`` optimizer steps so far): whether
        a point is due now."""
        self.last_loss = loss
        if not self.scoring.held_out and self.start is None:
            self.start = (loss, None)  # the untrained model's training loss, at 0 s
        self._sum += loss
        self._count += 1
        if self.scoring.max_steps is not None:
            if steps < self.scoring.max_steps:
                return False
            self.evals = self.k + 1
            return True
        return self.trained_s() >= self.seconds * (self.k + 1) / self.evals

    def training_loss(self) -> tuple[float, None]:
        """The mean training loss since the last point: the score without held-out data."""
        if self._count:
            return self._sum / self._count, None
        return (math.nan if self.last_loss is None else self.last_loss), None

    def pause(self) -> float:
        """Stop the training clock for scoring; returns the training seconds so far."""
        self._paused_at = self.clock()
        return self._paused_at - self.began - self.paused

    def record(
        self, loss: float, metric: float | None, *, steps: int, trained_s: float | None = None
    ) -> tuple[Outcome, str] | None:
        """Record a point; a reason to stop ((outcome, message)), or None to go on.

        Args:
            trained_s: Training seconds at the point (``pause()``'s); default: now.
        """
        seconds = self.trained_s() if trained_s is None else trained_s
        if trained_s is not None:
            self.paused += self.clock() - self._paused_at
        point = CurvePoint(seconds, steps, loss, metric)
        self.curve.append(point)
        self._sum, self._count = 0.0, 0
        last = loss if self.last_loss is None else self.last_loss
        if not (math.isfinite(loss) and math.isfinite(last)):
            bad = loss if not math.isfinite(loss) else last
            return Outcome.DIVERGED, f"the loss became {bad} by step {steps}"
        if metric is not None and not math.isfinite(metric):
            return Outcome.DIVERGED, f"the metric became {metric} by step {steps}"
        stop_at = self.scoring.stop_at
        if stop_at is not None and stop_at.reached(point):
            return Outcome.OK, f"reached {stop_at.value:.4g} at evaluation {self.k} of {self.evals}"
        if self.k >= self.evals:
            return Outcome.OK, ""
        return None
