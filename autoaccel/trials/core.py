"""The trial core: one meter set-up and one way to finish a measurement, for every trial.

In-process trials (``advise()``), script trials (inside ``prepare()``, under ``autoaccel
tune``) and LR range tests all measure through a ``TrialMeter``:

- set-up: the meter synchronises CUDA at window edges and reads CPU memory (RSS of the
  process and its loader workers) on CPU; CUDA peak statistics are reset; the memory in use
  before the trial is noted, so the memory model sees what the trial itself added;
- finish: a failure (OOM, divergence, a crash, a prune, a timeout) is classified into an
  ``Outcome``; otherwise the window's figures; then the memory figures of the device.

A ``TrialMeter`` is the prepared ``Run``'s observer, so the run's loader and ``run.step()``
report to it; the training step itself is ``Run.train_step`` (``autoaccel.runtime.run``).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import replace

import torch

from autoaccel.measure import (
    Measurement,
    Meter,
    MeterSettings,
    classify_failure,
    process_rss_bytes,
)
from autoaccel.runtime.run import StepObserver

__all__ = ["TrialMeter"]


class TrialMeter(StepObserver):
    """A ``Meter`` set up for one trial on ``device``, and the trial's finished measurement.

    As the prepared run's observer it times every fetch and step; a script that batches by
    itself (no ``run.loader``) has each step timed from the end of the one before.

    Args:
        settings: Warm-up and window lengths.
        device: Where the model trains.
        prune: The meter's prune callback (``PruneBelow``), or None.

    Example:
        >>> trial = TrialMeter(MeterSettings(window_s=0.0, min_window_steps=1),
        ...                    torch.device("cpu"))
        >>> while not trial.meter.done:
        ...     trial.fetch_start(); trial.fetch_end(8); trial.step_end(None, 8)
        >>> trial.finish().outcome, trial.failed(MemoryError("out of memory")).outcome
        (<Outcome.OK: 'ok'>, <Outcome.OOM: 'oom'>)
    """

    def __init__(
        self,
        settings: MeterSettings,
        device: torch.device,
        *,
        prune: Callable[[float, float], bool] | None = None,
    ) -> None:
        self.device = device
        cuda = device.type == "cuda"
        gc.collect()  # what earlier trials left is not this trial's memory
        self.base_memory_bytes = 0 if cuda else process_rss_bytes()
        self.meter = Meter(
            settings,
            sync=torch.cuda.synchronize if cuda else None,
            memory=None if cuda else process_rss_bytes,
            prune=prune,
        )
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        self._fetched = False

    def fetch_start(self) -> None:
        self.meter.fetch_start()

    def fetch_end(self, samples: int) -> None:
        self.meter.fetch_end(samples)
        self._fetched = True

    def step_end(self, loss: torch.Tensor | None, batch_size: int) -> None:
        """Raises the meter's stops: ``PruneTrial``, ``TrialTimeout``, ``FloatingPointError``."""
        if not self._fetched:  # the script batches by itself: the step began at the last end
            self.meter.step_started_at_last_end(batch_size)
        self._fetched = False
        self.meter.step_end(loss)

    def finish(self) -> Measurement:
        """The window's figures (a NaN loss in it is classified too), with the memory
        figures of the device."""
        try:
            return self._with_memory(self.meter.result())
        except Exception as error:  # a NaN loss in the window, or no window at all
            return self.failed(error)

    def failed(self, error: BaseException) -> Measurement:
        """A failure classified into its ``Outcome``. Call it inside the ``except`` block
        and keep no reference to ``error``: its traceback holds the trial's tensors and
        loader workers, which are freed when the block ends."""
        outcome, message = classify_failure(error)
        running = getattr(error, "samples_per_s", 0.0)  # a pruned trial's pace when stopped
        return self._with_memory(
            Measurement(outcome=outcome, message=message, samples_per_s=running)
        )

    def _with_memory(self, measurement: Measurement) -> Measurement:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
            return replace(measurement, memory_kind="cuda", peak_memory_bytes=peak)
        return replace(measurement, memory_base_bytes=self.base_memory_bytes)
