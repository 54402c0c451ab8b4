"""What runs inside a training script: the caller's data and the loaders rebuilt from it
(``data``), the prepared run object (``run``), and ``prepare()`` itself (``prepare``,
imported from there: it also starts a tuner's trial session, which sits above ``run``)."""

from __future__ import annotations

from autoaccel.runtime.data import DataSpec, build_loader, describe_data, move_batch
from autoaccel.runtime.run import PreparedLoader, Run, StepObserver, endless, has_conv

__all__ = [
    "DataSpec",
    "PreparedLoader",
    "Run",
    "StepObserver",
    "build_loader",
    "describe_data",
    "endless",
    "has_conv",
    "move_batch",
]
