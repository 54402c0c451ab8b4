"""The ``autoaccel`` command line.

Every command builds plain data first (``CommandResult.data``, what ``--json`` prints and
what tests check), then renders it as tables. Exit codes: 0 ok, 1 runtime failure, 2 usage
or bad input. Errors are one line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from autoaccel import __version__
from autoaccel.config import TrainingConfig, load_config, yaml_scalar
from autoaccel.errors import AutoaccelError
from autoaccel.probe import HardwareProfile, probe_system

__all__ = ["CommandResult", "main"]


@dataclass
class CommandResult:
    """What a command produced: data for ``--json``, tables for people, warnings for both."""

    data: dict[str, Any]
    tables: list[Table] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    exit_code: int = 0


def _gib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 2**30:.1f} GiB"


def _known(value: Any, unit: str = "") -> str:
    return "unknown" if value is None else f"{value}{unit}"


# --- probe -------------------------------------------------------------------------------


def probe_tables(profile: HardwareProfile) -> list[Table]:
    """The probe report as tables."""
    cpu = profile.cpu
    system = Table(title="Machine", show_header=False, title_justify="left")
    system.add_column("fact", style="bold")
    system.add_column("value")
    quota = "none" if cpu.quota_cores is None else f"{cpu.quota_cores:g} cores"
    rows = [
        ("CPU", cpu.model),
        ("cores", f"{cpu.logical_cores} logical, {_known(cpu.physical_cores)} physical"),
        (
            "usable cores",
            f"{cpu.usable_cores} (affinity {cpu.affinity_cores}, cgroup quota {quota})",
        ),
        ("ISA flags", ", ".join(cpu.flags) or "none of note"),
        ("RAM", f"{_gib(cpu.ram_total_bytes)} total, {_gib(cpu.ram_available_bytes)} available"),
        ("GPUs", profile.nvml_status if not profile.gpus else f"{len(profile.gpus)} via NVML"),
        (
            "driver",
            f"{_known(profile.driver_version)} (CUDA {_known(profile.cuda_driver_version)})",
        ),
        ("Python", profile.software.python),
        ("torch", profile.software.torch),
        (
            "CUDA / cuDNN / NCCL",
            f"{_known(profile.software.cuda)} / "
            f"{_known(profile.software.cudnn)} / "
            f"{_known(profile.software.nccl)}",
        ),
        (
            "torch sees",
            f"{profile.software.cuda_device_count} CUDA device(s)"
            + (", bf16 ok" if profile.software.cuda_bf16_supported else ""),
        ),
        (
            "torch.compile",
            ("yes: " if profile.software.compile_available else "no: ")
            + profile.software.compile_reason,
        ),
        ("fingerprint", profile.fingerprint()),
        ("probe time", f"{profile.probe_s:.3f} s"),
    ]
    for fact, value in rows:
        system.add_row(fact, value)
    tables = [system]
    if profile.gpus:
        gpus = Table(title="GPUs", title_justify="left")
        for column in (
            "nvml",
            "cuda",
            "name",
            "memory total / free",
            "cc",
            "PCIe gen",
            "PCIe width",
            "NVLink up",
            "power limit",
            "max SM clock",
            "UUID",
        ):
            gpus.add_column(column)
        for g in profile.gpus:
            gpus.add_row(
                str(g.nvml_index),
                "hidden" if g.torch_index is None else f"cuda:{g.torch_index}",
                g.name,
                f"{_gib(g.memory_total_bytes)} / {_gib(g.memory_free_bytes)}",
                _known(g.compute_capability),
                f"{_known(g.pcie_gen_current)} of {_known(g.pcie_gen_max)}",
                f"x{_known(g.pcie_width_current)} of x{_known(g.pcie_width_max)}",
                _known(g.nvlink_links_up),
                _known(g.power_limit_w, " W"),
                _known(g.max_sm_clock_mhz, " MHz"),
                g.uuid,
            )
        tables.append(gpus)
    precisions = Table(title="Precisions", title_justify="left")
    precisions.add_column("precision")
    precisions.add_column("runs here")
    precisions.add_column("why")
    for p in profile.precisions:
        precisions.add_row(p.precision, "yes" if p.supported else "no", p.reason)
    tables.append(precisions)
    return tables


def cmd_probe(args: argparse.Namespace) -> CommandResult:
    """``autoaccel probe``: what this machine can do for training."""
    profile = probe_system()
    return CommandResult(profile.to_dict(), probe_tables(profile))


# --- show --------------------------------------------------------------------------------


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
            meaning = f"measured: {evidence[f_name]}"
        table.add_row(f_name, "(script's own)" if value is None else yaml_scalar(value), meaning)
    prov = config.provenance
    for key in ("hardware", "hardware_fingerprint", "created_at", "command"):
        table.add_row(f"provenance.{key}", _known(getattr(prov, key)), "")
    for key, value in {**prov.measured, **prov.versions}.items():
        table.add_row(f"provenance.{key}", str(value), "")
    return table


def cmd_show(args: argparse.Namespace) -> CommandResult:
    """``autoaccel show``: a config file as a table, with a warning for other hardware."""
    config = load_config(args.path)
    profile = probe_system()
    warnings = [w for w in (config.hardware_mismatch(profile),) if w]
    warnings += [f"{p} (on this machine)" for p in config.check_for(profile)]
    data = {"path": str(args.path), "config": config.to_dict(), "warnings": warnings}
    return CommandResult(data, [config_table(config, str(args.path))], warnings)


# --- plumbing ----------------------------------------------------------------------------

EXAMPLES = {
    "probe": "autoaccel probe            # readable report\n"
    "  autoaccel probe --json     # for machines",
    "show": "autoaccel show                 # ./autoaccel.yaml\n"
    "  autoaccel show runs/cfg.yaml --json",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of tables")
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser = argparse.ArgumentParser(
        prog="autoaccel",
        description="Make PyTorch training run as fast as this machine allows, and prove it.",
        epilog="example:\n  autoaccel probe\n  autoaccel show autoaccel.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"autoaccel {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str, handler: Callable[[argparse.Namespace], CommandResult], summary: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            parents=[common],
            help=summary,
            description=summary,
            epilog=f"example:\n  {EXAMPLES[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    add("probe", cmd_probe, "Report the CPU, memory, GPUs, software and precisions here.")
    show = add("show", cmd_show, "Print a config file as a table.")
    show.add_argument(
        "path",
        nargs="?",
        type=Path,
        default=Path("autoaccel.yaml"),
        help="config file (default: ./autoaccel.yaml)",
    )
    return parser


def render(result: CommandResult, *, as_json: bool, out: Console, err: Console) -> None:
    """Print a command's result for people or, with ``--json``, for machines."""
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True, highlight=False)
    if as_json:
        out.file.write(json.dumps(result.data, indent=2, default=str) + "\n")
        return
    for table in result.tables:
        out.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out, err = Console(), Console(stderr=True)
    try:
        result = args.handler(args)
    except AutoaccelError as error:
        if args.debug:
            traceback.print_exc()
        err.print(f"autoaccel: error: {error}", soft_wrap=True, highlight=False, markup=False)
        return error.exit_code
    except KeyboardInterrupt:
        err.print("autoaccel: interrupted", highlight=False)
        return 130
    except Exception as error:
        if args.debug:
            traceback.print_exc()
        err.print(
            f"autoaccel: internal error: {type(error).__name__}: {error} "
            "(rerun with --debug and report it)",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
        return 1
    render(result, as_json=args.json, out=out, err=err)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
