"""Render a config as commented YAML: every key with what it does and its evidence."""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

_HEADER = """\
# autoaccel training config (schema {version}).
# Used by `autoaccel.prepare()` in your script and by `autoaccel run train.py`;
# shown by `autoaccel show {name}`. Empty values keep what the script itself does.
"""


#: How a knob's evidence starts when it was not measured (a rule, such as the LR scaling).
NOT_MEASURED = "not measured: "


#: What each measured figure compares, written beside it: one headline speedup, named.
MEASURED_NOTES = {
    "speedup": "the headline speedup: median paired ratio, tuned vs. baseline measured in turn",
    "speedup_min": "the lowest paired ratio",
    "speedup_max": "the highest paired ratio",
    "samples_per_s": "the tuned config, its kept measurement (single trials: noisier)",
    "baseline_samples_per_s": "your own settings, their first measurement",
    "trials": "trials measured in the search",
}


def evidence_note(evidence: str) -> str:
    """A knob's evidence as the config shows it: "measured: ..." unless it says it was not.

    Example:
        >>> evidence_note("32 -> 256: 1.8x samples/s")
        'measured: 32 -> 256: 1.8x samples/s'
        >>> evidence_note(NOT_MEASURED + "the linear rule for a 8x batch")
        'not measured: the linear rule for a 8x batch'
    """
    return evidence if evidence.startswith(NOT_MEASURED) else f"measured: {evidence}"


def yaml_scalar(value: Any) -> str:
    """``value`` as it reads in the YAML file (``true``, ``32-true``, empty for None)."""
    if value is None:
        return ""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000)
    return text.removesuffix("\n...\n").strip()


def _line(indent: str, key: str, value: Any, comment: str) -> str:
    text = f"{indent}{key}: {yaml_scalar(value)}".rstrip()
    return f"{text}  # {comment}" if comment else text


def render_yaml(config: Any, *, name: str = "autoaccel.yaml") -> str:
    lines = [_HEADER.format(version=config.schema_version, name=name).rstrip("\n")]
    evidence = config.provenance.evidence
    for f in dataclasses.fields(config):
        if f.name == "provenance":
            continue
        comment = f.metadata["doc"]
        if f.name in evidence:
            comment += f" | {evidence_note(evidence[f.name])}"
        lines.append(_line("", f.name, getattr(config, f.name), comment))
    lines.append(f"provenance:  # {_doc_of(config, 'provenance')}")
    for f in dataclasses.fields(config.provenance):
        value = getattr(config.provenance, f.name)
        if isinstance(value, dict):
            lines.append(
                f"  {f.name}:  # {f.metadata['doc']}"
                if value
                else f"  {f.name}: {{}}  # {f.metadata['doc']}"
            )
            notes = MEASURED_NOTES if f.name == "measured" else {}
            lines += [
                _line("    ", yaml_scalar(str(k)), v, notes.get(str(k), ""))
                for k, v in value.items()
            ]
        else:
            lines.append(_line("  ", f.name, value, f.metadata["doc"]))
    return "\n".join(lines) + "\n"


def _doc_of(obj: Any, name: str) -> str:
    return next(f.metadata["doc"] for f in dataclasses.fields(obj) if f.name == name)
