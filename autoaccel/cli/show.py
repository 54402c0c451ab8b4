"""``autoaccel show``: a config file as a table, with a warning for other hardware."""

from __future__ import annotations

import argparse

from rich.table import Table

from autoaccel.cli._common import (
    CommandResult,
    add_config_path,
    config_path,
    known,
    machine_warnings,
)
from autoaccel.config import (
    TrainingConfig,
    evidence_note,
    load_config,
    yaml_scalar,
)

__all__ = ["EXAMPLE", "SUMMARY", "add_arguments", "config_table", "run"]

SUMMARY = "Print a config file as a table."
EXAMPLE = (
    "autoaccel show                 # $AUTOACCEL_CONFIG, else ./autoaccel.yaml\n"
    "  autoaccel show runs/cfg.yaml --json"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_path(parser)


def run(args: argparse.Namespace) -> CommandResult:
    """A config file as a table, with a warning for other hardware."""
    path = config_path(args)
    config = load_config(path)
    warnings = machine_warnings(config)
    data = {"path": str(path), "config": config.to_dict(), "warnings": warnings}
    return CommandResult(data, [config_table(config, str(path))], warnings)


def config_table(config: TrainingConfig, title: str) -> Table:
    """A config as a table: knob, value, what it does and its evidence."""
    table = Table(title=title, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value")
    table.add_column("meaning / evidence")
    evidence = config.provenance.evidence
    for f_name, value in {"schema_version": config.schema_version, **config.knobs()}.items():
        meaning = TrainingConfig.__dataclass_fields__[f_name].metadata["doc"]
        if f_name in evidence:
            meaning = evidence_note(evidence[f_name])
        table.add_row(f_name, "(script's own)" if value is None else yaml_scalar(value), meaning)
    prov = config.provenance
    for key in ("hardware", "hardware_fingerprint", "created_at", "command"):
        table.add_row(f"provenance.{key}", known(getattr(prov, key)), "")
    for key, value in {**prov.measured, **prov.versions}.items():
        table.add_row(f"provenance.{key}", str(value), "")
    return table
