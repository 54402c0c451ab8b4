"""autoaccel: make PyTorch training run as fast as the hardware allows, and prove it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from autoaccel._version import __version__
from autoaccel.config import TrainingConfig, load_config, save_config
from autoaccel.errors import AutoaccelError, ConfigError, DataError, TrialError, UsageError
from autoaccel.prepare import prepare
from autoaccel.probe import HardwareProfile, probe_system
from autoaccel.protocol import in_trial
from autoaccel.run import Run

if TYPE_CHECKING:
    from autoaccel.advice import Advice, advise

# advise() needs Optuna and scikit-learn (2-3 s to import); a training script that only
# calls prepare() should not pay for them, so they load on first use (PEP 562).
_LAZY = {"Advice": "autoaccel.advice", "advise": "autoaccel.advice"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'autoaccel' has no attribute {name!r}")


__all__ = [
    "Advice",
    "AutoaccelError",
    "ConfigError",
    "DataError",
    "HardwareProfile",
    "Run",
    "TrainingConfig",
    "TrialError",
    "UsageError",
    "__version__",
    "advise",
    "in_trial",
    "load_config",
    "prepare",
    "probe_system",
    "save_config",
]
