"""The ``autoaccel`` command line.

Every command builds plain data first (``CommandResult.data``, what ``--json`` prints and
what tests check), then renders it as tables. Exit codes: 0 ok, 1 runtime failure, 2 usage
or bad input. Errors are one line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from autoaccel._version import __version__
from autoaccel.config import TrainingConfig, load_config, yaml_scalar
from autoaccel.errors import AutoaccelError, UsageError
from autoaccel.measure import MeterSettings
from autoaccel.prepare import CONFIG_ENV
from autoaccel.probe import HardwareProfile, probe_system
from autoaccel.runner import check_script, config_for_script, launch_command

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


# --- tune and run --------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds from "90", "90s", "3m" or "1h"."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 90s, 3m or 1h, got {text!r}"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a duration must be positive, got {text!r}")
    return value


def cmd_tune(args: argparse.Namespace) -> CommandResult:
    """``autoaccel tune``: search the fastest config for a training script."""
    # Imported here, not at the top: Optuna and scikit-learn cost 2-3 s, which `probe`,
    # `show` and `run` should not pay.
    from autoaccel.tune import tune_script

    settings = MeterSettings(window_s=args.window) if args.window else MeterSettings()
    console = None if args.json else Console(stderr=True)
    out = args.out
    try:
        result = tune_script(
            args.script,
            tuple(args.script_args),
            budget_s=args.budget,
            max_trials=args.max_trials,
            storage=args.storage,
            study_name=args.study,
            trial_timeout_s=args.trial_timeout,
            out=out,
            settings=settings,
            console=console,
            seed=args.seed,
            confirm_pairs=args.confirm_pairs,
            lr_find=args.lr_find,
        )
    except KeyboardInterrupt:
        where = out or args.script.parent / "autoaccel.yaml"
        saved = (
            f"the best config so far is in {where}"
            if Path(where).exists()
            else ("no config was written yet")
        )
        Console(stderr=True).print(
            f"autoaccel: interrupted; {saved}. Run the same command again to resume the study.",
            highlight=False,
            soft_wrap=True,
        )
        raise
    advice = result.advice
    paths = Table(title="Where things are", title_justify="left", show_header=False)
    paths.add_column("")
    paths.add_column("")
    paths.add_row("config", str(result.config_path))
    paths.add_row("trial logs", str(result.trials_dir))
    paths.add_row("study", f"{advice.search.study_name} in {result.storage}")
    paths.add_row("next", f"autoaccel run {args.script}")
    data = {
        **advice.to_dict(),
        "config_path": str(result.config_path),
        "trials_dir": str(result.trials_dir),
    }
    return CommandResult(data, [*advice.tables(), paths], list(advice.notes))


def cmd_run(args: argparse.Namespace) -> CommandResult:
    """``autoaccel run``: run a script with its tuned config (torchrun for several processes)."""
    script: Path = args.script
    check_script(script)
    path = config_for_script(script, args.config)
    if path is None:
        raise UsageError(
            f"no autoaccel.yaml beside {script} or here; tune first: "
            f"`autoaccel tune {script}`, or pass --config PATH"
        )
    config = load_config(path, profile=probe_system())
    command = launch_command(script, tuple(args.script_args), config.processes)
    env = {**os.environ, CONFIG_ENV: str(Path(path).resolve())}
    Console(stderr=True).print(
        f"autoaccel: {' '.join(command)}  (config {path})",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    returncode = subprocess.run(command, env=env, check=False).returncode
    return CommandResult(
        {"command": command, "config": str(path), "returncode": returncode}, exit_code=returncode
    )


def cmd_lr_find(args: argparse.Namespace) -> CommandResult:
    """``autoaccel lr-find``: an LR range test inside a training script."""
    from autoaccel.tune import find_lr_script

    result = find_lr_script(
        args.script,
        tuple(args.script_args),
        config_path=args.config,
        batch_size=args.batch_size,
        min_lr=args.min_lr,
        max_lr=args.max_lr,
        steps=args.steps,
        timeout_s=args.timeout,
    )
    finding = result.finding
    summary = Table(title="LR range test", title_justify="left", show_header=False)
    summary.add_column("")
    summary.add_column("")
    summary.add_row("suggested lr", f"{finding.suggestion:.3g}" if finding.suggestion else "none")
    summary.add_row("confidence", finding.confidence)
    summary.add_row("why", finding.reason)
    origin = result.config_path or "the script's own settings"
    summary.add_row("batch size", f"{result.batch_size} ({origin})")
    summary.add_row("steps", f"{len(result.raw_losses)} (log {result.log_path})")
    curve = Table(title="Smoothed loss by lr", title_justify="left")
    curve.add_column("lr", justify="right")
    curve.add_column("loss", justify="right")
    every = max(1, len(finding.lrs) // 12)
    for lr, loss in list(zip(finding.lrs, finding.losses, strict=True))[::every]:
        mark = "  <- suggested" if finding.suggestion and lr == finding.suggestion else ""
        curve.add_row(f"{lr:.3g}", f"{loss:.4g}{mark}")
    data = {
        "suggestion": finding.suggestion,
        "confidence": finding.confidence,
        "reason": finding.reason,
        "batch_size": result.batch_size,
        "config": str(result.config_path) if result.config_path else None,
        "lrs": list(finding.lrs),
        "smoothed_losses": list(finding.losses),
        "raw_losses": list(result.raw_losses),
        "log": str(result.log_path),
    }
    if finding.suggestion is not None:
        summary.add_row(
            "next",
            f"set `lr: {finding.suggestion:.3g}` in the config (the peak LR for batch "
            f"{result.batch_size}) or in your optimizer",
        )
    return CommandResult(data, [summary, curve])


# --- plumbing ----------------------------------------------------------------------------

EXAMPLES = {
    "probe": "autoaccel probe            # readable report\n"
    "  autoaccel probe --json     # for machines",
    "show": "autoaccel show                 # ./autoaccel.yaml\n"
    "  autoaccel show runs/cfg.yaml --json",
    "tune": "autoaccel tune examples/train_cnn.py --budget 3m\n"
    "  autoaccel tune train.py --max-trials 20 --out runs/autoaccel.yaml -- --epochs 100",
    "run": "autoaccel run examples/train_cnn.py -- --epochs 5",
    "lr-find": "autoaccel lr-find examples/train_cnn.py\n"
    "  autoaccel lr-find train.py --batch-size 256 --max-lr 1 --json -- --data ./data",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of tables")
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser = argparse.ArgumentParser(
        prog="autoaccel",
        description="Make PyTorch training run as fast as this machine allows, and prove it.",
        epilog="example:\n  autoaccel probe\n  autoaccel tune examples/train_cnn.py --budget 2m\n"
        "  autoaccel run examples/train_cnn.py\n  autoaccel show examples/autoaccel.yaml",
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
    tune = add("tune", cmd_tune, "Find the fastest config for a training script, measured.")
    tune.add_argument("script", type=Path, help="a training script that calls autoaccel.prepare()")
    tune.add_argument(
        "--budget",
        type=parse_duration,
        default=parse_duration("4m"),
        help="wall-clock budget, e.g. 90s, 3m (default 4m)",
    )
    tune.add_argument("--max-trials", type=int, default=40, help="at most this many trials")
    tune.add_argument(
        "--storage", help="Optuna storage URL or SQLite path (default .autoaccel/studies.db)"
    )
    tune.add_argument(
        "--study", help="study name (default: derived from the script; the same command resumes)"
    )
    tune.add_argument(
        "--trial-timeout",
        type=parse_duration,
        default=parse_duration("2m"),
        help="kill a trial after this long (default 2m)",
    )
    tune.add_argument(
        "--out",
        type=Path,
        help="where to write the config (default: autoaccel.yaml beside the script)",
    )
    tune.add_argument("--window", type=float, help="seconds measured per trial (default 1.5)")
    tune.add_argument("--seed", type=int, help="seed of the sampler")
    tune.add_argument(
        "--confirm-pairs",
        type=int,
        default=3,
        help="interleaved baseline/best pairs that confirm the speedup (default 3)",
    )
    lr_find = add(
        "lr-find", cmd_lr_find, "LR range test on a training script, at its tuned batch size."
    )
    lr_find.add_argument("script", type=Path, help="a training script that calls prepare()")
    lr_find.add_argument(
        "--config",
        type=Path,
        help="config whose batch size and loader to use (default: autoaccel.yaml beside "
        "the script, then ./autoaccel.yaml; without one, the script's own settings)",
    )
    lr_find.add_argument("--batch-size", type=int, help="sweep at this batch size instead")
    lr_find.add_argument("--min-lr", type=float, default=1e-7, help="first lr (default 1e-7)")
    lr_find.add_argument("--max-lr", type=float, default=10.0, help="last lr (default 10)")
    lr_find.add_argument("--steps", type=int, default=100, help="steps in the sweep (default 100)")
    lr_find.add_argument(
        "--timeout",
        type=parse_duration,
        default=parse_duration("5m"),
        help="kill the script after this long (default 5m)",
    )
    tune.add_argument(
        "--lr-find",
        action="store_true",
        help="after the search, run an LR range test at the picked batch size and write its "
        "suggestion as the config's lr",
    )
    run = add("run", cmd_run, "Run a training script with its tuned config.")
    run.add_argument("script", type=Path, help="the training script")
    run.add_argument(
        "--config",
        type=Path,
        help="config file (default: autoaccel.yaml beside the script, then ./autoaccel.yaml)",
    )
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
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args: list[str] = []
    if "--" in argv:  # everything after -- belongs to the training script
        split = argv.index("--")
        argv, script_args = argv[:split], argv[split + 1 :]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.script_args = script_args
    if args.command in ("tune",) and args.max_trials < 1:
        parser.error(f"--max-trials must be >= 1, got {args.max_trials}")
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
