"""``autoaccel run``: run a training script with its tuned config (torchrun when the config
uses several processes). The config is found by the same lookup ``prepare()`` uses
(``autoaccel.config.find_config``) and handed to the script through ``$AUTOACCEL_CONFIG``,
so the script cannot pick another file.

On a cluster, ``--nnodes N --rdzv-endpoint HOST:PORT`` starts this node's share of a
multi-node run (torchrun's c10d rendezvous), and ``--print`` prints the line to start on
every node instead of running it (docs/scale-out.md)."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
from pathlib import Path

from autoaccel.cli._common import CommandResult, add_script
from autoaccel.config import CONFIG_ENV, find_config, load_config
from autoaccel.errors import UsageError
from autoaccel.progress import plain_console
from autoaccel.redact import mask_args, mask_command

__all__ = ["EXAMPLE", "SUMMARY", "add_arguments", "run"]

SUMMARY = "Run a training script with its tuned config."
EXAMPLE = (
    "autoaccel run examples/train_cnn.py -- --epochs 5\n"
    "  autoaccel run train.py --nnodes 2 --rdzv-endpoint node1:29400 --print"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_script(parser, config_help="config file")
    parser.add_argument(
        "--nnodes",
        type=int,
        default=1,
        metavar="N",
        help="machines that train together, each with the config's processes (default 1)",
    )
    parser.add_argument(
        "--rdzv-endpoint",
        metavar="HOST:PORT",
        help="where the nodes meet (torchrun's c10d rendezvous): one node's address and a "
        "free port, e.g. node1:29400; needed with --nnodes above 1",
    )
    parser.add_argument(
        "--rdzv-id",
        default="autoaccel",
        metavar="ID",
        help="the job's name at the rendezvous, the same on every node (default autoaccel)",
    )
    parser.add_argument(
        "--print",
        action="store_true",
        help="print the command line to start (on every node) instead of running it",
    )


#: A rendezvous host: a DNS name or IPv4 address, or an IPv6 address in brackets; a port
#: of ASCII digits; a job name of plain characters (all reach torchrun's command line).
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\]")
_PORT = re.compile(r"[0-9]{1,5}")
_RDZV_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_NODES = 1024


def _check_nodes(args: argparse.Namespace) -> None:
    """Refuse a multi-node request that cannot meet, before anything runs."""
    if not 1 <= args.nnodes <= MAX_NODES:
        raise UsageError(f"--nnodes must be 1 to {MAX_NODES}, got {args.nnodes}")
    if not _RDZV_ID.fullmatch(args.rdzv_id):
        raise UsageError(
            f"--rdzv-id must be 1 to 64 letters, digits, '_', '.' or '-', got {args.rdzv_id!r:.70}"
        )
    endpoint = args.rdzv_endpoint
    if args.nnodes > 1 and not endpoint:
        raise UsageError(
            f"--nnodes {args.nnodes} needs --rdzv-endpoint HOST:PORT, where the nodes meet "
            "(one node's address and a free port, e.g. node1:29400)"
        )
    if endpoint is not None and args.nnodes == 1:
        raise UsageError(
            "--rdzv-endpoint is where several nodes meet: give --nnodes above 1 with it, or "
            "leave it out to train on this machine"
        )
    if endpoint is not None:
        host, _, port = endpoint.rpartition(":")
        if not (_HOST.fullmatch(host) and _PORT.fullmatch(port) and 0 < int(port) < 65536):
            raise UsageError(
                "--rdzv-endpoint must be HOST:PORT (a host name, an IPv4 address or [IPv6], "
                f"and a port 1-65535), e.g. node1:29400, got {endpoint!r:.70}"
            )


def _shell_line(command: list[str], path: Path) -> str:
    """The command as one shell line with its config, ``torchrun`` spelled as its CLI."""
    shown = mask_args(command)
    if shown[1:3] == ["-m", "torch.distributed.run"]:
        shown = ["torchrun", *shown[3:]]
    return f"{CONFIG_ENV}={shlex.quote(str(Path(path).resolve()))} {shlex.join(shown)}"


def run(args: argparse.Namespace) -> CommandResult:
    """Run a script with its tuned config."""
    from autoaccel.probe import probe_system  # torch: loaded when the command runs
    from autoaccel.trials.script import check_script, launch_command

    script: Path = args.script
    check_script(script)
    _check_nodes(args)
    path = find_config(args.config, script=script, origin="--config")
    if path is None:
        raise UsageError(
            f"no autoaccel.yaml beside {script} or here; tune first: "
            f"`autoaccel tune {shlex.quote(str(script))}`, or pass --config PATH"
        )
    config = load_config(path, profile=probe_system())
    command = launch_command(
        script,
        tuple(args.script_args),
        config.processes,
        nodes=args.nnodes,
        endpoint=args.rdzv_endpoint,
        rendezvous_id=args.rdzv_id,
    )
    if args.print:
        line = _shell_line(command, path)
        where = f"on each of the {args.nnodes} nodes" if args.nnodes > 1 else "here"
        head = f"# start {where} ({config.processes} processes each, strategy {config.strategy}):"
        return CommandResult(
            {"command": line, "config": str(path), "nodes": args.nnodes},
            text=f"{head}\n{line}\n",
        )
    env = {**os.environ, CONFIG_ENV: str(Path(path).resolve())}
    plain_console(stderr=True).print(
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
