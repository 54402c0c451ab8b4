"""Loss curves from a training script: the ``Trainer`` of ``autoaccel tune``.

``advise()`` trains copies of the model in-process (``time_to_loss.InProcessTrainer``);
``tune`` runs the script once per run instead, each time from the script's own initial
weights: the script trains the config for a stretch of training time and scores itself
with its ``evaluate`` hook (``autoaccel.trials.curve_session``). The tuner reads each point
as it is written, so the study's pruner can stop a slow run while it trains. The LR range
test is the script's own (``autoaccel lr-find``'s).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autoaccel.config import TrainingConfig
from autoaccel.curves import CurvePoint, LossRun
from autoaccel.schedule import LrFinding, OptimizerFacts, RangeSweep
from autoaccel.scoring import Scoring
from autoaccel.states import Outcome
from autoaccel.trials.protocol import CurveSpec, TrialReport
from autoaccel.trials.script import ScriptRunner, ScriptTrial

__all__ = ["POINTS_FILE", "PointsReader", "ScriptTrainer", "sweep_script"]

POINTS_FILE = "points.jsonl"
SLACK = 3.0  # a curve run's timeout: the runner's, plus this many times its training time


class ScriptTrainer:
    """``Trainer`` on a training script: one script run per curve.

    Args:
        runner: Runs the script.
        baseline: The baseline trial's report (the hook, the optimizer's facts).
        metric: The evaluate hook's entry to score as the metric (``--metric``).
    """

    def __init__(self, runner: ScriptRunner, baseline: TrialReport, metric: str | None) -> None:
        self.runner = runner
        self.metric = metric
        self.seed = 0  # order 0 is the script's own data order; others reseed torch
        self.held_out = baseline.has_hook
        self.scored_on = (
            f"{runner.script.name}'s {baseline.hook_name or 'evaluate() hook'}"
            if baseline.has_hook
            else f"the training loss ({runner.script.name} passes prepare() no evaluate hook)"
        )
        momentum = baseline.optimizer_momentum
        self.optimizer = OptimizerFacts(
            baseline.optimizer or "unknown",
            float(baseline.optimizer_lr or 1e-3),
            (str(momentum[0]), float(momentum[1])) if momentum else None,
        )

    def train_for(
        self,
        config: TrainingConfig,
        *,
        seconds: float,
        scoring: Scoring,
        on_eval: Callable[[int, CurvePoint], bool] | None = None,
        seed: int | None = None,
    ) -> LossRun:
        """One script run of ``config`` for ``seconds`` of training time; never raises for a
        failing config (its outcome says). ``seed`` other than ``self.seed`` reseeds."""
        watch = PointsReader(on_eval, scoring.evals)

        def spec(folder: Path) -> CurveSpec:
            points = folder / POINTS_FILE
            watch.path = points
            reseed = None if seed is None or seed == self.seed else seed
            return CurveSpec(seconds, scoring.to_dict(), str(points), reseed)

        trial = self.runner.run(
            config,
            curve=spec,
            metric=self.metric,
            stop_when=watch.stop_when if on_eval is not None else None,
            timeout_s=self.runner.timeout_s + SLACK * seconds,
        )
        return _loss_run(config, trial, watch, scoring)

    def find_lr(self, config: TrainingConfig, *, steps: int, max_s: float) -> LrFinding:
        """The script's own LR range test at ``config``'s batch size."""
        finding, trial = sweep_script(self.runner, config, {"steps": steps})
        if finding is not None:
            return finding
        why = f"the script gave no curve: {trial.measurement.message} ({trial.log_path})"
        return LrFinding((), (), None, "none", why)


class PointsReader:
    """The points a running script has written so far, each told to ``on_eval`` once."""

    def __init__(self, on_eval: Callable[[int, CurvePoint], bool] | None, evals: int) -> None:
        self.on_eval = on_eval
        self.evals = evals
        self.path: Path | None = None
        self.points: list[CurvePoint] = []
        self._offset = 0

    def read(self) -> list[tuple[int, CurvePoint, bool]]:
        """New whole lines of the points file: (its number k from 1, the point, whether it
        ended the run)."""
        if self.path is None or not self.path.exists():
            return []
        with self.path.open() as handle:
            handle.seek(self._offset)
            text = handle.read()
        lines = text.split("\n")[:-1]  # a line without its newline is still being written
        self._offset += sum(len(line) + 1 for line in lines)
        new = []
        for line in lines:
            *row, ended = json.loads(line)
            point = _point(row)
            self.points.append(point)
            new.append((len(self.points), point, bool(ended)))
        return new

    def stop_when(self, _folder: Path) -> bool:
        """Polled while the script runs: True stops it (the pruner said so)."""
        for k, point, ended in self.read():
            if not ended and k < self.evals and self.on_eval and self.on_eval(k, point):
                return True
        return False


def _point(row: list[Any]) -> CurvePoint:
    """[seconds, step, loss, metric] as written by the script (JSON keeps NaN)."""
    seconds, step, loss, metric = row
    return CurvePoint(float(seconds), int(step), float(loss), None if metric is None else metric)


def _loss_run(
    config: TrainingConfig, trial: ScriptTrial, watch: PointsReader, scoring: Scoring
) -> LossRun:
    """The script run as a ``LossRun``: the report's curve, or the points written before it
    was stopped or killed."""
    report = trial.report
    watch.read()
    if report is not None and report.curve is not None:
        curve = tuple(_point(row) for row in report.curve)
    else:
        curve = tuple(watch.points)
    outcome, message = trial.measurement.outcome, trial.measurement.message
    if outcome is Outcome.PRUNED:
        message = f"stopped at evaluation {len(curve)} of {scoring.evals}"
    elif not trial.reached_prepare or (report is None and outcome is Outcome.ERROR):
        message = f"{message} (log: {trial.log_path})"
    start = report.held_out_start if report is not None and report.held_out_start else None
    loss, metric = (start[0], start[1]) if start else (scoring.start or (None, None))
    return LossRun(config, outcome, message, curve, start_loss=loss, start_metric=metric)


def sweep_script(
    runner: ScriptRunner, config: TrainingConfig | None, sweep: dict[str, Any]
) -> tuple[LrFinding | None, ScriptTrial]:
    """Run the script once as an LR range test; its finding (None when it gave no curve)."""
    trial = runner.run(config, lr_sweep=sweep)
    report = trial.report
    if report is None or report.lr_curve is None:
        return None, trial
    replay = RangeSweep(**sweep)
    for loss in report.lr_curve["raw"]:
        if replay.record(float(loss)):
            break
    replay.stop = report.lr_curve["stop"] or replay.stop
    return replay.finding(), trial
