"""``autoaccel run``: run a training script with its tuned config (torchrun when the config
uses several processes). The config is found by the same lookup ``prepare()`` uses
(``autoaccel.config.find_config``) and handed to the script through ``$AUTOACCEL_CONFIG``,
so the script cannot pick another file."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

from rich.console import Console

from autoaccel.cli._common import CommandResult, add_script
from autoaccel.config import CONFIG_ENV, find_config, load_config
from autoaccel.errors import UsageError
from autoaccel.redact import mask_args, mask_command

__all__ = ["EXAMPLE", "SUMMARY", "add_arguments", "run"]

SUMMARY = "Run a training script with its tuned config."
EXAMPLE = "autoaccel run examples/train_cnn.py -- --epochs 5"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_script(parser, config_help="config file")


def run(args: argparse.Namespace) -> CommandResult:
    """Run a script with its tuned config."""
    from autoaccel.probe import probe_system  # torch: loaded when the command runs
    from autoaccel.trials.script import check_script, launch_command

    script: Path = args.script
    check_script(script)
    path = find_config(args.config, script=script, origin="--config")
    if path is None:
        raise UsageError(
            f"no autoaccel.yaml beside {script} or here; tune first: "
            f"`autoaccel tune {script}`, or pass --config PATH"
        )
    config = load_config(path, profile=probe_system())
    command = launch_command(script, tuple(args.script_args), config.processes)
    env = {**os.environ, CONFIG_ENV: str(Path(path).resolve())}
    Console(stderr=True).print(
        f"autoaccel: {mask_command(command)}  (config {path})",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    returncode = subprocess.run(command, env=env, check=False).returncode
    # A script killed by signal N reports -N; a shell would say 128 + N, and so does run.
    exit_code = 128 - returncode if returncode < 0 else returncode
    return CommandResult(
        {"command": mask_args(command), "config": str(path), "returncode": exit_code},
        exit_code=exit_code,
    )
