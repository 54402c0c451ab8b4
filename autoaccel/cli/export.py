"""``autoaccel export``: a tuned config in Lightning's, Accelerate's, DeepSpeed's,
torchrun's or the shell's own words (``autoaccel.export``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from autoaccel.atomic import atomic_write_text
from autoaccel.cli._common import CommandResult, add_config_path, config_path
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
        "--script", default="train.py", help="the training script, for command lines"
    )


def run(args: argparse.Namespace) -> CommandResult:
    """The config in the target's own format; printed, or written with ``--dir``."""
    path = config_path(args)
    config = load_config(path)
    result = export(config, args.to, script=args.script, config_path=str(Path(path).resolve()))
    data = {"config": str(path), **result.to_dict()}
    if args.dir is not None:
        if args.dir.exists() and not args.dir.is_dir():
            raise UsageError(f"--dir {args.dir} is a file; name a folder")
        written = []
        for name, text in result.files.items():
            atomic_write_text(args.dir / name, text)
            written.append(str(args.dir / name))
        data["written"] = written
        lines = [f"wrote {name}" for name in written]
        lines += [
            f"not expressible in {args.to}: {k}: {v}" for k, v in result.not_expressed.items()
        ]
        return CommandResult(data, text="\n".join(lines) + "\n")
    return CommandResult(data, text=result.text())
