"""The script side of a trial: the meter inside ``prepare()`` under ``autoaccel tune``.

``prepare()`` makes a ``TrialSession`` when ``AUTOACCEL_TRIAL`` names a spec. The prepared
run tells it about every fetch and step; it measures them through the trial core (or, for an
LR range test, sets each step's LR and records its loss), writes the ``TrialReport`` and
ends the script with ``TrialFinished``. Under torchrun, rank 0 decides and every rank leaves
at the same step; a script that crashes or ends early still leaves a classified report.
"""

from __future__ import annotations

import atexit
import sys
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
import torch.distributed as dist

from autoaccel.measure import Measurement, PruneBelow, PruneTrial, TrialTimeout, classify_failure
from autoaccel.runtime.run import StepObserver
from autoaccel.schedule import RangeSweep, apply_lr
from autoaccel.states import Outcome
from autoaccel.trials.core import TrialMeter
from autoaccel.trials.protocol import TrialFinished, TrialReport, TrialSpec

__all__ = ["TrialSession"]

# What rank 0 tells every rank after a step (broadcast as a tensor under torchrun).
_GO_ON, _STOP = 0, 1


class TrialSession(StepObserver):
    """The meter inside a tuner's trial: measures steps, writes the report, ends the run."""

    def __init__(
        self,
        spec: TrialSpec,
        report: dict[str, Any],
        *,
        rank: int,
        world: int,
        device: torch.device,
        optimizer: torch.optim.Optimizer,
    ) -> None:
        self.spec = spec
        self.optimizer = optimizer
        self.sweep = RangeSweep(**spec.lr_sweep) if spec.lr_sweep is not None else None
        if self.sweep is not None:
            apply_lr(optimizer, self.sweep.lr)
        self.report = report
        self.rank = rank
        self.world = world
        self.device = device
        self._written = False
        prune = PruneBelow(spec.prune_below_samples_per_s / world)
        self.trial = TrialMeter(spec.meter_settings(), device, prune=prune)
        self.meter = self.trial.meter
        self._previous_hook = sys.excepthook
        sys.excepthook = self._on_uncaught
        atexit.register(self._on_exit)

    def fetch_start(self) -> None:
        self.trial.fetch_start()

    def fetch_end(self, samples: int) -> None:
        self.trial.fetch_end(samples)

    def step_end(self, loss: torch.Tensor | None, batch_size: int) -> None:
        status, failure = _GO_ON, None
        if self.sweep is not None:
            # Every rank keeps the same step count, so the same next LR; rank 0 decides.
            done = self.sweep.record(float(loss.detach())) if loss is not None else True
            status = _STOP if done else _GO_ON
            if not done:
                apply_lr(self.optimizer, self.sweep.lr)
        elif self.rank == 0:
            try:
                self.trial.step_end(loss, batch_size)
                status = _STOP if self.meter.done else _GO_ON
            except (PruneTrial, TrialTimeout, FloatingPointError) as error:
                status, failure = _STOP, error
        if self.world > 1:
            # Rank 0 decides for everyone, so every process leaves at the same step.
            flag = torch.tensor([status], device=self.device)
            dist.broadcast(flag, src=0)
            status = int(flag.item())
        if status == _GO_ON:
            return
        if self.rank == 0:
            if self.sweep is not None:
                self._finish_sweep(self.sweep)
            else:
                self._finish(failure)
        raise TrialFinished()

    def _finish_sweep(self, sweep: RangeSweep) -> None:
        curve = {"lrs": sweep.lrs, "raw": sweep.raw, "stop": sweep.stop}
        report = TrialReport(
            measurement=Measurement(outcome=Outcome.OK, message="LR range test").to_dict(),
            world_size=self.world,
            lr_curve=curve,
            **self.report,
        )
        report.write(Path(self.spec.report_path))
        self._written = True

    def _finish(self, failure: BaseException | None) -> None:
        measurement = self.trial.failed(failure) if failure else self.trial.finish()
        if self.world > 1:  # every process trained as many samples in the same time
            measurement = replace(
                measurement,
                samples_per_s=measurement.samples_per_s * self.world,
                samples_per_s_min=measurement.samples_per_s_min * self.world,
                samples_per_s_max=measurement.samples_per_s_max * self.world,
                samples=measurement.samples * self.world,
                loss_samples=tuple(n * self.world for n in measurement.loss_samples),
            )
        self._write(measurement)

    def _write(self, measurement: Measurement) -> None:
        report = TrialReport(
            measurement=measurement.to_dict(), world_size=self.world, **self.report
        )
        report.write(Path(self.spec.report_path))
        self._written = True

    def _on_exit(self) -> None:
        """The script ended on its own before the window closed: say so, usefully.

        Not when another rank has written the report: a rank that failed (out of memory,
        say) wrote why, and rank 0, which then saw only a broken connection and left its
        loop, must not overwrite that with "the script ended".
        """
        if Path(self.spec.report_path).exists() and not self._written:
            return
        if self.rank == 0 and not self._written and self.sweep is not None and self.sweep.raw:
            self.sweep.stop = f"the script ended after {len(self.sweep.raw)} steps"
            self._finish_sweep(self.sweep)  # a short sweep is still a curve
        if self.rank == 0 and not self._written:
            steps = self.meter.steps
            self._write(
                Measurement(
                    outcome=Outcome.ERROR,
                    message=f"the script ended after {steps} steps, before the measurement "
                    "finished; let it train longer under `autoaccel tune` (more epochs or steps)",
                )
            )

    def _on_uncaught(
        self, kind: type[BaseException], error: BaseException, tb: TracebackType | None
    ) -> None:
        """A crash in the script's own code still leaves a classified result.

        Under torchrun the rank that fails writes it, whichever rank that is, before its
        exit closes the sockets the others wait on: torchrun then stops the other ranks, so
        a rank that runs out of memory fails the trial as "oom" rather than leaving rank 0
        to report the broken connection it sees next (it finds the report and stays quiet).
        """
        report = Path(self.spec.report_path)
        if not self._written and not report.exists() and isinstance(error, Exception):
            outcome, message = classify_failure(error)
            if self.world > 1:
                message = f"rank {self.rank} of {self.world}: {message}"
            self._write(Measurement(outcome=outcome, message=message))
        self._previous_hook(kind, error, tb)
