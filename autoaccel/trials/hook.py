"""The script's validation hook: ``prepare(..., evaluate=fn)``.

``fn()`` takes no arguments and returns the held-out loss: a number, or a dict of numbers
with the loss under ``"loss"`` and any metric under its own name (``{"loss": 0.41,
"accuracy": 0.93}``). autoaccel calls it only in a tuner's trial, at its own times, with
the model in eval mode and gradients off (both restored after, and the RNG states too), so
the script's usual evaluation code serves as it is (nanoGPT:
``evaluate=lambda: estimate_loss()["val"]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from autoaccel.errors import DataError, UsageError
from autoaccel.process import preserved_process_state

__all__ = ["EvaluateFn", "call_hook", "check_hook", "read_values"]

EvaluateFn = Callable[[], Any]


def check_hook(evaluate: Any) -> EvaluateFn | None:
    """``prepare()``'s ``evaluate=``, checked.

    Raises:
        UsageError: it is not callable.
    """
    if evaluate is None or callable(evaluate):
        return evaluate
    raise UsageError(
        f"prepare(): evaluate must be a function that returns the held-out loss, got "
        f"{type(evaluate).__name__} {evaluate!r:.40}; e.g. evaluate=lambda: val_loss(model)"
    )


def call_hook(
    evaluate: EvaluateFn, model: nn.Module, metric: str | None
) -> tuple[float, float | None]:
    """Call the hook with ``model`` in eval mode and gradients off; (loss, metric value).

    Raises:
        DataError: the hook raised, or gave something that is not a loss (see
            ``read_values``); the message names the hook and the fix.
    """
    was_training = model.training
    model.eval()
    try:
        # The hook's random draws (each DataLoader it iterates seeds itself from torch's RNG)
        # are given back, or the steps after an evaluation would depend on whether the clock
        # called one: two runs of one setup would train differently.
        with torch.no_grad(), preserved_process_state(rng=True):
            value = evaluate()
    except Exception as error:
        first = (str(error).splitlines() or [""])[0][:200]
        raise DataError(
            f"evaluate() raised {type(error).__name__}: {first}; it is called with no "
            "arguments and must return the held-out loss"
        ) from error
    finally:
        model.train(was_training)
    return read_values(value, metric)


def read_values(value: Any, metric: str | None) -> tuple[float, float | None]:
    """The hook's return value as (loss, metric value or None).

    Example:
        >>> read_values(0.5, None), read_values({"loss": 0.5, "accuracy": 0.9}, "accuracy")
        ((0.5, None), (0.5, 0.9))

    Raises:
        DataError: not a number or a dict of numbers, no ``"loss"`` in the dict, or no entry
            for ``metric``.
    """
    if isinstance(value, Mapping):
        if "loss" not in value:
            raise DataError(
                f"evaluate() returned a dict without 'loss' (keys: {', '.join(map(str, value))}); "
                "put the held-out loss under 'loss', e.g. {'loss': val_loss, 'accuracy': acc}"
            )
        loss = _number(value["loss"], "'loss'")
        if metric is None:
            return loss, None
        if metric not in value:
            raise DataError(
                f"--metric {metric}: evaluate() returned no {metric!r} (keys: "
                f"{', '.join(map(str, value))}); return it too, or name one of those"
            )
        return loss, _number(value[metric], repr(metric))
    loss = _number(value, "the value")
    if metric is not None:
        raise DataError(
            f"--metric {metric}: evaluate() returned one number (the loss); return a dict "
            f"such as {{'loss': val_loss, {metric!r}: value}} to report {metric}"
        )
    return loss, None


def _number(value: Any, what: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(
            f"evaluate() must return the held-out loss as a number (or a dict of numbers); "
            f"{what} was {type(value).__name__} {value!r:.40}"
        )
    return float(value)  # NaN is a finding (a diverged run), judged by the caller
