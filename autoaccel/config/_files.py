"""Loading and saving ``autoaccel.yaml``."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from autoaccel.atomic import atomic_write_text
from autoaccel.config._render import render_yaml
from autoaccel.config._schema import TrainingConfig
from autoaccel.errors import ConfigError

if TYPE_CHECKING:  # the probe imports torch: the config module must not
    from autoaccel.probe import HardwareProfile

__all__ = ["MAX_CONFIG_BYTES", "load_config", "now_iso", "save_config"]

MAX_CONFIG_BYTES = 256 * 1024


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
    data = _strict_yaml(_read_limited(path), source=str(path))
    if data is None:
        raise ConfigError(
            "the config file is empty, so it is refused rather than read as all defaults "
            "(which would override the script's own settings); delete it to train with the "
            "script's own settings, or write it again with `autoaccel tune`",
            source=str(path),
        )
    config = TrainingConfig.from_dict(data, source=str(path))
    if profile is not None:
        problems = config.check_for(profile)
        if problems:
            raise ConfigError(problems, source=str(path))
    return config


def _read_limited(path: Path) -> str:
    """The file's text, refused past ``MAX_CONFIG_BYTES`` (a config is a few KiB)."""
    if path.is_dir():
        raise ConfigError(
            "is a directory, not a config file; name the autoaccel.yaml inside it",
            source=str(path),
        )
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            "config file not found; create one with `autoaccel tune train.py` or "
            "`autoaccel.advise(...).save(path)`, or pass an existing path",
            source=str(path),
        ) from None
    except OSError as error:
        raise ConfigError(
            f"cannot read the config file ({error.strerror or error})", source=str(path)
        ) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"larger than {MAX_CONFIG_BYTES // 1024} KiB, so not an autoaccel config (one is "
            "a few KiB); name the right file",
            source=str(path),
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            "not UTF-8 text, so not an autoaccel config; name the right file",
            source=str(path),
        ) from None


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with no aliases (a few hundred bytes of them expand to
    gigabytes) and no duplicate keys (the last one would win silently)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a config", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen = set()
        for key_node, _ in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _strict_yaml(text: str, *, source: str) -> Any:
    """The YAML document in ``text`` (None when empty), read by ``_StrictLoader``.

    Raises:
        ConfigError: not YAML, an alias, a duplicate key, or nesting too deep to read.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None)
        why = f" ({problem})" if problem else ""
        raise ConfigError(
            f"not valid YAML{at}{why}; fix it or write the file again with `autoaccel tune`",
            source=source,
        ) from None
    except RecursionError:
        raise ConfigError(
            "nested too deeply to be an autoaccel config; name the right file", source=source
        ) from None


def now_iso() -> str:
    """The current UTC time, ISO 8601, to the second."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
