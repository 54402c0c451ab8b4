"""autoaccel: make PyTorch training run as fast as the hardware allows, and prove it.

The public face: ``advise()`` (tune in-process), ``prepare()`` (the lines a script adds),
``in_trial()``, ``TrainingConfig`` with ``load_config``/``save_config``, ``probe_system()``
and the errors. The tree below follows the pipeline; see ``docs/architecture.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from autoaccel._version import __version__

if TYPE_CHECKING:
    from autoaccel.advice import Advice
    from autoaccel.config import TrainingConfig, load_config, save_config
    from autoaccel.errors import (
        AutoaccelError,
        ConfigError,
        DataError,
        TrialError,
        UsageError,
    )
    from autoaccel.frontends.advise import advise
    from autoaccel.probe import HardwareProfile, probe_system
    from autoaccel.runtime.prepare import prepare
    from autoaccel.runtime.run import Run
    from autoaccel.trials.protocol import in_trial

# Every public name loads on first use (PEP 562): `import autoaccel` costs nothing, so the
# command line can catch Ctrl-C while torch loads, and a script that only calls prepare()
# never pays for Optuna.
_LAZY = {
    "Advice": "autoaccel.advice",
    "advise": "autoaccel.frontends.advise",
    "TrainingConfig": "autoaccel.config",
    "load_config": "autoaccel.config",
    "save_config": "autoaccel.config",
    "AutoaccelError": "autoaccel.errors",
    "ConfigError": "autoaccel.errors",
    "DataError": "autoaccel.errors",
    "TrialError": "autoaccel.errors",
    "UsageError": "autoaccel.errors",
    "HardwareProfile": "autoaccel.probe",
    "probe_system": "autoaccel.probe",
    "prepare": "autoaccel.runtime.prepare",
    "Run": "autoaccel.runtime.run",
    "in_trial": "autoaccel.trials.protocol",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'autoaccel' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


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
