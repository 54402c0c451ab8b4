"""``autoaccel export``: a tuned config in Lightning's, Accelerate's, DeepSpeed's,
torchrun's or the shell's own words (``autoaccel.export``)."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from autoaccel.atomic import atomic_write_text
from autoaccel.cli._common import CommandResult, add_config_path, config_path, machine_warnings
from autoaccel.config import load_config
from autoaccel.errors import UsageError
from autoaccel.export import TARGETS, export

__all__ = ["EXAMPLE", "SUMMARY", "add_arguments", "run"]

SUMMARY = "Write a tuned config for Lightning, Accelerate, DeepSpeed, torchrun or the shell."
EXAMPLE = (
    "autoaccel export --to lightning               # ./autoaccel.yaml, printed\n"
    "  autoaccel export runs/autoaccel.yaml --to deepspeed --dir runs/ --script train.py"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_path(parser)
    parser.add_argument(
        "--to",
        required=True,
        choices=sorted(TARGETS),
        help="; ".join(f"{name}: {what}" for name, what in TARGETS.items()),
    )
    parser.add_argument("--dir", type=Path, help="write the files here instead of printing them")
    parser.add_argument(
        "--script",
        help="the training script, for command lines (default: the one the config was tuned "
        "for, else train.py)",
    )


def run(args: argparse.Namespace) -> CommandResult:
    """The config in the target's own format; printed, or written with ``--dir``."""
    path = config_path(args)
    config = load_config(path)
    result = export(config, args.to, script=args.script, config_path=str(Path(path).resolve()))
    warnings = machine_warnings(config)
    if result.not_expressed and "the other knobs" not in result.not_expressed:
        warnings.append(
            f"{args.to} cannot hold {', '.join(result.not_expressed)}: set "
            f"{'it' if len(result.not_expressed) == 1 else 'them'} yourself, as the exported "
            "files say at their top"
        )
    data = {"config": str(path), **result.to_dict(), "warnings": warnings}
    if args.dir is not None:
        written = _write(args.dir, result.files)
        data["written"] = written
        lines = [f"wrote {name}" for name in written]
        lines += [
            f"not expressible in {args.to}: {k}: {v}" for k, v in result.not_expressed.items()
        ]
        return CommandResult(data, text="\n".join(lines) + "\n", warnings=warnings)
    return CommandResult(data, text=result.text(), warnings=warnings)


#: What ``export --dir`` wrote in a folder, by file name, as SHA-256 of the text: a file
#: there is replaced only while it is still what export wrote.
MANIFEST = ".autoaccel-export.json"


def _write(folder: Path, files: dict[str, str]) -> list[str]:
    """Write ``files`` into ``folder``, replacing only files an earlier export wrote there
    and nobody changed since; all checked before the first is written.

    Raises:
        UsageError: ``folder`` is a file or below one, or holds files of the same names that
            export did not write (or that were edited since), named in one line.
    """
    if any(p.exists() and not p.is_dir() for p in (folder, *folder.parents)):
        raise UsageError(f"--dir {folder} is, or is below, a file; name a folder")
    wrote = _manifest(folder)
    foreign = [
        name for name in files if (folder / name).exists() and not _ours(folder / name, wrote)
    ]
    if foreign:
        raise UsageError(
            f"--dir {folder}: {', '.join(foreign)} already there and not written by autoaccel "
            "export (or changed since), so not replaced; move them away or name another --dir"
        )
    for name, text in files.items():
        atomic_write_text(folder / name, text)
        wrote[name] = hashlib.sha256(text.encode()).hexdigest()
    atomic_write_text(folder / MANIFEST, json.dumps(wrote, indent=2, sort_keys=True) + "\n")
    return [str(folder / name) for name in files]


def _manifest(folder: Path) -> dict[str, str]:
    """The file digests an earlier export recorded in ``folder`` (none when unreadable)."""
    try:
        recorded = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return (
        {k: v for k, v in recorded.items() if isinstance(v, str)}
        if isinstance(recorded, dict)
        else {}
    )


def _ours(path: Path, wrote: dict[str, str]) -> bool:
    """Whether ``path`` is a regular file still as export wrote it."""
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    except OSError:
        return False
    return digest is not None and wrote.get(path.name) == digest
