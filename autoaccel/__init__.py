"""autoaccel: make PyTorch training run as fast as the hardware allows, and prove it."""

from __future__ import annotations

from autoaccel.config import TrainingConfig, load_config, save_config
from autoaccel.errors import AutoaccelError, ConfigError, DataError, TrialError, UsageError
from autoaccel.probe import HardwareProfile, probe_system

__version__ = "0.1.0"

__all__ = [
    "AutoaccelError",
    "ConfigError",
    "DataError",
    "HardwareProfile",
    "TrainingConfig",
    "TrialError",
    "UsageError",
    "__version__",
    "load_config",
    "probe_system",
    "save_config",
]
