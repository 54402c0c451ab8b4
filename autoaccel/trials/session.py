"""The script side of a trial: the meter inside ``prepare()`` under ``autoaccel tune``.

``prepare()`` makes a ``TrialSession`` when ``AUTOACCEL_TRIAL`` names a spec. The prepared
run tells it about every fetch and step; it measures them through the trial core (or, for an
LR range test, sets each step's LR and records its loss), writes the ``TrialReport`` and
ends the script with ``TrialFinished``. Under torchrun, rank 0 decides and every rank leaves
at the same step; a script that crashes or ends early still leaves a classified report.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from autoaccel.measure import Measurement, PruneBelow, PruneTrial, TrialTimeout
from autoaccel.schedule import RangeSweep, apply_lr
from autoaccel.states import Outcome
from autoaccel.trials.core import TrialMeter
from autoaccel.trials.protocol import TrialFinished, TrialSpec
from autoaccel.trials.session_base import SessionBase

__all__ = ["TrialSession"]


class TrialSession(SessionBase):
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
        super().__init__(spec, report, rank=rank, world=world, device=device)
        self.optimizer = optimizer
        self.sweep = RangeSweep(**spec.lr_sweep) if spec.lr_sweep is not None else None
        if self.sweep is not None:
            apply_lr(optimizer, self.sweep.lr)
        prune = PruneBelow(spec.prune_below_samples_per_s / world)
        self.trial = TrialMeter(spec.meter_settings(), device, prune=prune)
        self.meter = self.trial.meter
        self._watch_for_a_step(spec.meter_settings().max_trial_s)

    def fetch_start(self) -> None:
        self.trial.fetch_start()

    def fetch_end(self, samples: int) -> None:
        self.trial.fetch_end(samples)

    def step_end(self, loss: torch.Tensor | None, batch_size: int) -> None:
        self._stepped()
        stop, failure = False, None
        if self.sweep is not None:
            # Every rank keeps the same step count, so the same next LR; rank 0 decides.
            stop = self.sweep.record(float(loss.detach())) if loss is not None else True
            if not stop:
                apply_lr(self.optimizer, self.sweep.lr)
        elif self.rank == 0:
            try:
                self.trial.step_end(loss, batch_size)
                stop = self.meter.done
            except (PruneTrial, TrialTimeout, FloatingPointError) as error:
                stop, failure = True, error
        if not self._rank_0_decides(stop):
            return
        if self.rank == 0:
            if self.sweep is not None:
                self._finish_sweep(self.sweep)
            else:
                self._finish(failure)
        raise TrialFinished()

    def _finish_sweep(self, sweep: RangeSweep) -> None:
        curve = {"lrs": sweep.lrs, "raw": sweep.raw, "stop": sweep.stop}
        self._write_report(
            measurement=Measurement(outcome=Outcome.OK, message="LR range test").to_dict(),
            lr_curve=curve,
        )

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
            if isinstance(failure, PruneTrial):  # its words quote rank 0's rate: the trial's
                measurement = replace(measurement, message=str(failure.for_processes(self.world)))
        self._write(measurement)

    def _write(self, measurement: Measurement) -> None:
        self._write_report(measurement=measurement.to_dict())

    def _failed(self, outcome: Outcome, message: str) -> None:
        self._write(Measurement(outcome=outcome, message=message))

    def _ended_early(self) -> None:
        """The script ended on its own before the window closed: say so, usefully (a
        short LR sweep is still a curve)."""
        if self.sweep is not None and self.sweep.raw:
            self.sweep.stop = f"the script ended after {len(self.sweep.raw)} steps"
            self._finish_sweep(self.sweep)
            return
        self._write(
            Measurement(
                outcome=Outcome.ERROR,
                message=f"the script ended after {self.meter.steps} steps, before the "
                "measurement finished; let it train longer under `autoaccel tune` (more "
                "epochs or steps)",
            )
        )
