"""The script side of a loss-curve run, inside ``prepare()`` under ``autoaccel tune``.

The schedule study and the convergence guard ask a script to train a config for a stretch of
training time and report its loss curve, as ``advise()`` does in-process. The rule for when
to score and when to stop is the same one (``autoaccel.scoring.Scorer``); the score is the
script's ``evaluate`` hook (``autoaccel.trials.hook``), or the mean training loss since the
last point when the tuner asks for that. Each point goes to the points file as it is
scored (the tuner prunes a slow run by stopping its process); the report holds them all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoaccel.errors import DataError
from autoaccel.measure import Measurement
from autoaccel.scoring import Scorer, Scoring
from autoaccel.states import Outcome
from autoaccel.trials.hook import EvaluateFn, call_hook
from autoaccel.trials.protocol import TrialFinished, TrialSpec
from autoaccel.trials.session_base import SessionBase

__all__ = ["CurveSession"]


class CurveSession(SessionBase):
    """Scores the script's training as the curve spec says, writes the report, ends the run.

    Args:
        spec: The trial's spec (its ``curve`` set).
        report: The facts every report carries (``prepare``'s ``trial_facts``).
        model: The script's model (put in eval mode around the hook).
        evaluate: The script's hook, or None (then only the training loss can be scored).
        accumulation: Micro-batches per optimizer step.
    """

    def __init__(
        self,
        spec: TrialSpec,
        report: dict[str, Any],
        *,
        model: nn.Module,
        evaluate: EvaluateFn | None,
        accumulation: int,
        rank: int,
        world: int,
        device: torch.device,
    ) -> None:
        curve = spec.curve_spec()
        if curve is None:
            raise ValueError("CurveSession needs a trial spec with a curve")
        super().__init__(spec, report, rank=rank, world=world, device=device)
        self.curve = curve
        self.model, self.evaluate, self.metric = model, evaluate, spec.metric
        self.accumulation = max(1, accumulation)
        self.micro_steps = 0
        scoring = Scoring.from_dict(curve.scoring)
        if scoring.held_out and evaluate is None:
            scoring = Scoring(scoring.evals, scoring.max_steps, scoring.stop_at, None, False)
        self.scorer = Scorer(scoring, curve.seconds)
        self.points = Path(curve.points_path)
        if curve.seed is not None:  # another data order (and other random draws)
            torch.manual_seed(curve.seed)
        if scoring.held_out and scoring.start is None:
            try:  # the untrained model: the curve's point at 0 s
                self.scorer.start = self._score()
            except DataError as error:
                if self.rank == 0:
                    self._write(Outcome.ERROR, str(error))
                raise TrialFinished() from None
        self.scorer.began = self.scorer.clock()  # training time starts after that score

    def _score(self) -> tuple[float, float | None]:
        if self.evaluate is None:  # pragma: no cover - checked by the caller
            return self.scorer.training_loss()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return call_hook(self.evaluate, self.model, self.metric)

    def step_end(self, loss: torch.Tensor | None, batch_size: int) -> None:
        self.micro_steps += 1
        steps = self.micro_steps // self.accumulation
        value = float(loss.detach()) if loss is not None else float("nan")
        stop: tuple[Outcome, str] | None = None
        # Rank 0's clock says when a point is due, for every rank: a hook that gathers
        # across ranks (a Trainer's evaluate) must be called by all of them at one step.
        if self._rank_0_decides(self.scorer.due(value, steps=steps)):
            try:
                stop = self._point(steps)
            except DataError as error:  # the hook failed on this config: a finding
                stop = (Outcome.ERROR, str(error))
        if not self._rank_0_decides(stop is not None):
            return
        stop = stop or (Outcome.OK, "")
        if self.rank == 0:
            self._write(*stop)
        raise TrialFinished()

    def _point(self, steps: int) -> tuple[Outcome, str] | None:
        """Score one point, append it to the points file; a reason to stop, or None."""
        scorer = self.scorer
        if scorer.scoring.held_out:
            trained_s = scorer.pause()
            loss, metric = self._score()
            stop = scorer.record(loss, metric, steps=steps, trained_s=trained_s)
        else:
            stop = scorer.record(*scorer.training_loss(), steps=steps)
        if self.rank == 0:
            point = scorer.curve[-1]
            line = [point.seconds, point.step, point.loss, point.metric, stop is not None]
            with self.points.open("a") as points:
                points.write(json.dumps(line) + "\n")
        return stop

    def _write(self, outcome: Outcome, message: str) -> None:
        start = self.scorer.start
        self._write_report(
            measurement=Measurement(outcome=outcome, message=message).to_dict(),
            curve=[[p.seconds, p.step, p.loss, p.metric] for p in self.scorer.curve],
            held_out_start=list(start) if start else None,
        )

    def _failed(self, outcome: Outcome, message: str) -> None:
        self._write(outcome, message)

    def _ended_early(self) -> None:
        """The script ended on its own before the run's time was up: its curve so far."""
        self._write(
            Outcome.OK if self.scorer.curve else Outcome.ERROR,
            f"the script ended after {self.micro_steps} steps, before the run's "
            f"{self.curve.seconds:.0f} s of training",
        )
