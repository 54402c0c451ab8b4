"""``docs/config.md``, generated from the dataclasses so it cannot drift."""

from __future__ import annotations

import dataclasses

from autoaccel.config._render import yaml_scalar
from autoaccel.config._schema import Provenance, TrainingConfig, kind_name

__all__ = ["reference_markdown"]


def reference_markdown() -> str:
    """``docs/config.md``: every key, its type, default and meaning, from the dataclasses."""
    rows = [
        "# Config reference",
        "",
        "`autoaccel.yaml` holds one `TrainingConfig`. Every key below may be left out (its",
        "default applies); an empty value keeps what the training script itself does.",
        "Unknown keys, wrong types, out-of-range or non-finite values (`.nan`, `.inf`),",
        "duplicate keys and YAML aliases are errors, all reported at once; an empty file is",
        "refused (delete it to run with the script's own settings). `autoaccel show` and",
        "`autoaccel run` also check the machine: no more threads than cores, no more",
        "processes than GPUs (or usable cores), at most 4 loader workers per core.",
        "",
        "This page is generated from the dataclasses in `autoaccel/config.py`",
        "(`python -m autoaccel.reference > docs/config.md`); a test fails when it drifts.",
        "",
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for cls, prefix in ((TrainingConfig, ""), (Provenance, "provenance.")):
        for f in dataclasses.fields(cls):
            if f.metadata["kind"] is Provenance:
                continue
            meta = f.metadata
            kind = kind_name(meta["kind"])
            if meta.get("choices"):
                kind = " \\| ".join(f"`{c}`" for c in meta["choices"])
            if meta.get("minimum") is not None:
                kind += f", >= {meta['minimum']}"
            if meta.get("maximum") is not None:
                kind += f", <= {meta['maximum']:g}"
            if meta.get("optional"):
                kind += ", or empty"
            default = getattr(cls(), f.name)
            shown = yaml_scalar(default) or "empty"
            rows.append(f"| `{prefix}{f.name}` | {kind} | `{shown}` | {meta['doc']} |")
    return "\n".join(rows) + "\n"
