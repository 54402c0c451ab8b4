"""Loading and saving ``autoaccel.yaml``."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import yaml

from autoaccel.atomic import atomic_write_text
from autoaccel.config._render import render_yaml
from autoaccel.config._schema import TrainingConfig
from autoaccel.errors import ConfigError
from autoaccel.probe import HardwareProfile

__all__ = ["load_config", "now_iso", "save_config"]


def save_config(config: TrainingConfig, path: str | os.PathLike[str]) -> Path:
    """Write ``config`` as commented YAML, atomically.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "autoaccel.yaml"
        >>> save_config(TrainingConfig(batch_size=64), target).name
        'autoaccel.yaml'
    """
    path = Path(path)
    atomic_write_text(path, render_yaml(config, name=str(path)))
    return path


def load_config(
    path: str | os.PathLike[str], *, profile: HardwareProfile | None = None
) -> TrainingConfig:
    """Read and validate a config file.

    Args:
        path: The YAML file.
        profile: When given, also check that this machine can run the config.

    Raises:
        ConfigError: the file is missing, not YAML, or has any invalid key (all listed).

    Example:
        >>> import tempfile, pathlib
        >>> target = save_config(TrainingConfig(batch_size=64),
        ...                      pathlib.Path(tempfile.mkdtemp()) / "a.yaml")
        >>> load_config(target).batch_size
        64
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            "config file not found; create one with `autoaccel tune train.py` or "
            "`autoaccel.advise(...).save(path)`, or pass an existing path",
            source=str(path),
        ) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the config file ({error})", source=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"not valid YAML{at}; fix the syntax or write the file again with `autoaccel tune`",
            source=str(path),
        ) from None
    if data is None:
        data = {}
    config = TrainingConfig.from_dict(data, source=str(path))
    if profile is not None:
        problems = config.check_for(profile)
        if problems:
            raise ConfigError(problems, source=str(path))
    return config


def now_iso() -> str:
    """The current UTC time, ISO 8601, to the second."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
