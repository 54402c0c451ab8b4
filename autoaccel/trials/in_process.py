"""In-process trials for ``advise()``: one measured short run of a fresh copy.

Each trial trains a copy of the caller's model and optimizer (``Workload.fresh()``) with
the trial's config applied for its duration (``applied_settings``), through the same
prepared ``Run`` and trial core (``TrialMeter``) as a script trial, so the caller's weights,
optimizer state, RNG state and thread count are never changed.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

import torch

from autoaccel.config import TrainingConfig
from autoaccel.measure import Measurement, Meter, MeterSettings
from autoaccel.process import applied_settings
from autoaccel.runtime.data import build_loader
from autoaccel.runtime.run import Run, endless
from autoaccel.trials.core import TrialMeter
from autoaccel.trials.workload import Workload

__all__ = ["run_trial"]


def run_trial(
    workload: Workload,
    config: TrainingConfig,
    settings: MeterSettings,
    *,
    prune: Callable[[float, float], bool] | None = None,
) -> Measurement:
    """Train a fresh copy for one measured short run with ``config``.

    Never raises for a failing configuration: OOM, a diverging loss, a crash, a prune or a
    timeout come back as the measurement's ``outcome``.

    Raises:
        ConfigError: the config names a GPU this machine does not have.
    """
    device = workload.device_for(config)
    trial = TrialMeter(settings, device, prune=prune)
    failed: Measurement | None = None
    run = None
    try:
        model, optimizer, device = workload.fresh(config)
        with applied_settings(config):
            generator = torch.Generator().manual_seed(workload.seed)
            run = Run(
                model,
                optimizer,
                config,
                loader=build_loader(workload.data, config, generator=generator),
                device=device,
                observer=trial,
            )
            _drive(run, workload, trial.meter)
    except Exception as error:  # every failure is a finding about this config
        failed = trial.failed(error)  # classified here: the traceback dies with the block
    finally:
        if run is not None:
            run.close()  # its loader's worker processes end now
        del run
    measurement = trial.finish() if failed is None else failed
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return measurement


def _drive(run: Run, workload: Workload, meter: Meter) -> None:
    """The standard loop, epoch after epoch, until the trial's meter is done."""
    for batch in endless(run.loader):
        run.train_step(workload.loss, batch)
        if meter.done:
            return
