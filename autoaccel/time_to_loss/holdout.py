"""What the held-out loss is scored on: the validation set, or training samples held out
before any training (never trained on), and how a model is scored there."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch.utils.data import Subset, TensorDataset

from autoaccel.config import TrainingConfig
from autoaccel.errors import DataError
from autoaccel.process import preserved_process_state
from autoaccel.runtime.data import DataSpec, batch_samples, build_loader, describe_data, move_batch
from autoaccel.runtime.run import Run
from autoaccel.trials.workload import LossPlan

__all__ = ["Holdout", "holdout_split"]

HOLDOUT_FRACTION = 0.1
HOLDOUT_MAX = 2048  # samples held out from training when there is no validation set
EVAL_BATCH = 512


class Holdout:
    """The samples the loss is scored on, and how to score a model on them."""

    def __init__(self, spec: DataSpec, source: str) -> None:
        self.spec = spec
        self.source = source
        size = min(EVAL_BATCH, len(spec))
        self._config = TrainingConfig(batch_size=size)

    def evaluate(
        self, run: Run, loss_plan: LossPlan, metric: Callable[[Any, Any], Any] | None = None
    ) -> tuple[float, float | None]:
        """(mean loss, mean metric or None) over every held-out sample (eval mode, no
        gradients). The metric is ``metric(model(*inputs), target)`` per batch.

        Raises:
            DataError: the metric fails or does not give one number (only with a metric).
        """
        model = run.model
        model.eval()
        total, scored, count = 0.0, 0.0, 0
        try:  # the RNGs given back: when the clock calls an evaluation cannot move the steps
            with torch.no_grad(), preserved_process_state(rng=True):
                for batch in build_loader(self.spec, self._config):
                    batch = move_batch(batch, run.device)
                    with run.autocast():
                        loss = loss_plan(model, batch)
                        if metric is not None:
                            scored += _metric_value(metric, model, batch) * batch_samples(batch)
                    n = batch_samples(batch)
                    total += float(loss) * n
                    count += n
        finally:
            model.train()
        return total / max(count, 1), (scored / max(count, 1) if metric is not None else None)


def _metric_value(metric: Callable[[Any, Any], Any], model: Any, batch: Any) -> float:
    """``metric(model(*inputs), target)`` as a float."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise DataError(
            "metric= needs batches of (inputs..., target) to call metric(output, target); "
            "leave metric out and give target= as a held-out loss instead"
        )
    output = model(*batch[:-1])
    try:
        value = metric(output, batch[-1])
    except Exception as error:
        raise DataError(
            f"metric(output, target) failed: {str(error).splitlines()[0]}; it gets the "
            "model's output and the batch's target, as loss_fn does"
        ) from error
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise DataError(
            f"metric(output, target) must give one number (e.g. the batch's mean accuracy), "
            f"got {type(value).__name__}: {str(error).splitlines()[0]}"
        ) from error


def holdout_split(
    spec: DataSpec,
    val_data: Any = None,
    *,
    val_loader_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
) -> tuple[DataSpec, Holdout]:
    """(what to train on, what to score on): the validation set when given, else training
    samples held out (10%, at most 2,048, at least one batch).

    Raises:
        DataError: a validation set smaller than one batch, or too little data to hold any
            out.
    """
    if val_data is not None:
        val = describe_data(val_data, loader_kwargs=val_loader_kwargs)
        if len(val) < spec.batch_size:
            raise DataError(
                f"the validation set has {len(val)} samples, fewer than one batch "
                f"({spec.batch_size}): its loss would be too noisy to rank setups; give at "
                "least one batch of samples, or leave val_data out to hold out training samples"
            )
        return spec, Holdout(val, f"the validation set ({len(val):,} samples)")
    n = len(spec)
    held = max(min(int(n * HOLDOUT_FRACTION), HOLDOUT_MAX), spec.batch_size)
    if held > n // 2:
        raise DataError(
            f"{n} training samples are too few to hold {held} out for scoring the loss; "
            "pass val_data, or use objective='throughput'"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    scored, trained = order[:held], order[held:]
    if spec.tensors is not None:
        kept = tuple(t[trained] for t in spec.tensors)
        out = tuple(t[scored] for t in spec.tensors)
        train = replace(spec, dataset=TensorDataset(*kept), tensors=kept)
        holdout = replace(spec, dataset=TensorDataset(*out), tensors=out, shuffle=False)
    else:
        train = replace(spec, dataset=Subset(spec.dataset, trained.tolist()), sampler=None)
        holdout = replace(
            spec, dataset=Subset(spec.dataset, scored.tolist()), sampler=None, shuffle=False
        )
    return train, Holdout(holdout, f"{held:,} training samples held out (never trained on)")
