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
        "Unknown keys, wrong types and out-of-range values are errors, all reported at once.",
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
            if meta.get("optional"):
                kind += ", or empty"
            default = getattr(cls(), f.name)
            shown = yaml_scalar(default) or "empty"
            rows.append(f"| `{prefix}{f.name}` | {kind} | `{shown}` | {meta['doc']} |")
    return "\n".join(rows) + "\n"
