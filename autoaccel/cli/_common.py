"""What every command shares: its result type, and small formatting and parsing helpers."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from autoaccel.config import TrainingConfig
from autoaccel.progress import plain_console

__all__ = [
    "CommandResult",
    "add_config_path",
    "add_quiet",
    "add_script",
    "config_path",
    "finite_number",
    "gib",
    "known",
    "parse_duration",
    "positive_int",
    "positive_number",
    "progress_console",
]


@dataclass
class CommandResult:
    """What a command produced: data for ``--json``, tables for people, warnings for both."""

    data: dict[str, Any]
    tables: list[Table] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # findings worth a line, not warnings
    exit_code: int = 0
    text: str | None = None  # plain text for people, printed as it is (an exported file)


def add_script(parser: argparse.ArgumentParser, *, config_help: str | None = None) -> None:
    """The training script argument, and ``--config`` when the command reads a config
    (found, without it, by the lookup ``prepare()`` uses: ``autoaccel.config.find_config``)."""
    parser.add_argument(
        "script",
        type=Path,
        help="a training script that calls prepare() (or trains with "
        "autoaccel.lightning.Trainer or autoaccel.hf.Trainer)",
    )
    if config_help is not None:
        parser.add_argument(
            "--config",
            type=Path,
            help=f"{config_help} (default: $AUTOACCEL_CONFIG, else autoaccel.yaml beside the "
            "script, else ./autoaccel.yaml: the lookup prepare() uses)",
        )


def add_config_path(parser: argparse.ArgumentParser) -> None:
    """An optional config file argument, found by ``config_path`` when left out."""
    parser.add_argument(
        "path",
        nargs="?",
        type=Path,
        help="config file (default: $AUTOACCEL_CONFIG, else ./autoaccel.yaml)",
    )


def config_path(args: argparse.Namespace) -> Path:
    """The config a command reads: the one named, else ``find_config``'s, else
    ./autoaccel.yaml (which ``load_config`` then names as missing)."""
    from autoaccel.config import CONFIG_NAME, find_config

    return args.path or find_config() or Path(CONFIG_NAME)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``--quiet``, for the commands that show progress on stderr."""
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def progress_console(args: argparse.Namespace) -> Console | None:
    """Where progress goes: stderr (so ``--json`` keeps stdout for data), or nowhere with
    ``--quiet``."""
    return None if args.quiet else plain_console(stderr=True)


def gib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 2**30:.1f} GiB"


def known(value: Any, unit: str = "") -> str:
    return "unknown" if value is None else f"{value}{unit}"


def parse_duration(text: str) -> float:
    """Seconds from "90", "90s", "3m" or "1h".

    Example:
        >>> parse_duration("90"), parse_duration("3m"), parse_duration("1h")
        (90.0, 180.0, 3600.0)
    """
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 90s, 3m or 1h, got {text!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"a duration must be positive and finite, got {text!r}")
    return value


def positive_number(text: str) -> float:
    """A finite number above 0 (``--window 1.5``).

    Example:
        >>> positive_number("1.5")
        1.5
    """
    value = finite_number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive, finite number, got {text!r}")
    return value


def finite_number(text: str) -> float:
    """A finite number (``--target 0.95``).

    Example:
        >>> finite_number("-0.5")
        -0.5
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 0.95, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1 (``--max-trials 20``).

    Example:
        >>> positive_int("20")
        20
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number such as 3, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def machine_warnings(config: TrainingConfig) -> list[str]:
    """What a user of ``config`` on this machine should know first: that it was measured on
    other hardware, and what of it cannot run here (``show`` and ``export`` both say it)."""
    from autoaccel.probe import probe_system  # a light probe: no torch

    profile = probe_system(light=True)
    warnings = [w for w in (config.hardware_mismatch(profile),) if w]
    return warnings + [f"{p} (on this machine)" for p in config.check_for(profile)]
