"""``docs/config.md``, generated from the dataclasses so it cannot drift."""

from __future__ import annotations

import dataclasses
from typing import Any

from autoaccel.config._render import yaml_scalar
from autoaccel.config._schema import Provenance, TrainingConfig, kind_name

__all__ = ["json_schema", "reference_markdown"]


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


def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of ``autoaccel.yaml``, from the same metadata as the
    validation, for editors and other tools (``python -m autoaccel.reference --schema``).

    Example:
        >>> json_schema()["properties"]["batch_size"]["maximum"]
        16777216
    """

    def properties(cls: type) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            meta = f.metadata
            if meta["kind"] is Provenance:
                found[f.name] = {
                    "type": "object",
                    "description": meta["doc"],
                    "properties": properties(Provenance),
                    "additionalProperties": False,
                }
                continue
            kinds = meta["kind"] if isinstance(meta["kind"], tuple) else (meta["kind"],)
            types = [_JSON_TYPES[k] for k in kinds]
            if float in kinds:
                types = [t for t in types if t != "integer"]
            if meta.get("optional") or dict in kinds:
                types.append("null")
            entry: dict[str, Any] = {
                "type": types[0] if len(types) == 1 else types,
                "description": meta["doc"],
                "default": getattr(cls(), f.name),
            }
            if meta.get("choices"):
                entry["enum"] = [*meta["choices"], *([None] if meta.get("optional") else [])]
            if meta.get("pattern"):
                entry["pattern"] = f"^({meta['pattern'][0]})$"
            if meta.get("minimum") is not None:
                entry["minimum"] = meta["minimum"]
            if meta.get("maximum") is not None:
                entry["maximum"] = meta["maximum"]
            if dict in kinds:
                entry["additionalProperties"] = {"type": ["string", "number"]}
            found[f.name] = entry
        return found

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "autoaccel.yaml",
        "description": "The training config autoaccel tunes (generated from its validation).",
        "type": "object",
        "properties": properties(TrainingConfig),
        "additionalProperties": False,
    }


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object"}
