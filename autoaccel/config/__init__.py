"""``TrainingConfig``: the knobs autoaccel tunes, their YAML file, and its validation.

One name per knob everywhere: the dataclass field is the YAML key, the Optuna parameter
name and the CLI override key. Every field carries its documentation in its metadata, which
writes the comment beside each key in ``autoaccel.yaml`` and the table in
``docs/config.md`` (a test keeps that file in step: regenerate it with
``python -m autoaccel.reference > docs/config.md``).
"""

from __future__ import annotations

from autoaccel.config._files import load_config, now_iso, save_config
from autoaccel.config._lookup import CONFIG_ENV, CONFIG_NAME, find_config
from autoaccel.config._reference import json_schema, reference_markdown
from autoaccel.config._render import NOT_MEASURED, evidence_note, render_yaml, yaml_scalar
from autoaccel.config._schema import (
    DEVICE_SPELLINGS,
    LR_SCALING,
    OPTIMIZER_IMPLS,
    SCHEDULES,
    SCHEMA_VERSION,
    STRATEGIES,
    Provenance,
    TrainingConfig,
    check_device_spelling,
)

__all__ = [
    "CONFIG_ENV",
    "CONFIG_NAME",
    "DEVICE_SPELLINGS",
    "LR_SCALING",
    "NOT_MEASURED",
    "OPTIMIZER_IMPLS",
    "SCHEDULES",
    "SCHEMA_VERSION",
    "STRATEGIES",
    "Provenance",
    "TrainingConfig",
    "check_device_spelling",
    "evidence_note",
    "find_config",
    "json_schema",
    "load_config",
    "now_iso",
    "reference_markdown",
    "render_yaml",
    "save_config",
    "yaml_scalar",
]
