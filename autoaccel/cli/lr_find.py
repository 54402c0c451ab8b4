"""``autoaccel lr-find``: Smith's LR range test inside a training script, at its tuned batch
size."""

from __future__ import annotations

import argparse
import shlex

from rich.table import Table

from autoaccel.budget import SWEEP_MAX_LR, SWEEP_MIN_LR, SWEEP_STEPS
from autoaccel.cli._common import (
    CommandResult,
    add_quiet,
    add_script,
    parse_duration,
    positive_int,
    positive_number,
    progress_console,
)

__all__ = ["EXAMPLE", "SUMMARY", "add_arguments", "run"]

SUMMARY = "LR range test on a training script, at its tuned batch size."
EXAMPLE = (
    "autoaccel lr-find examples/train_cnn.py\n"
    "  autoaccel lr-find train.py --batch-size 256 --max-lr 1 --json -- --data ./data"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_script(
        parser,
        config_help="config whose batch size and loader to use; without one, "
        "the script's own settings",
    )
    parser.add_argument("--batch-size", type=positive_int, help="sweep at this batch size instead")
    parser.add_argument(
        "--min-lr",
        type=positive_number,
        default=SWEEP_MIN_LR,
        help=f"first lr (default {SWEEP_MIN_LR:g})",
    )
    parser.add_argument(
        "--max-lr",
        type=positive_number,
        default=SWEEP_MAX_LR,
        help=f"last lr (default {SWEEP_MAX_LR:g})",
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=SWEEP_STEPS,
        help=f"steps in the sweep (default {SWEEP_STEPS})",
    )
    add_quiet(parser)
    parser.add_argument(
        "--timeout",
        type=parse_duration,
        default=parse_duration("5m"),
        help="kill the script after this long (default 5m)",
    )


def run(args: argparse.Namespace) -> CommandResult:
    """An LR range test inside a training script."""
    # Imported here, not at the top: torch and Optuna cost 1-2 s, which `--help`,
    # `show` and `export` should not pay.

    from autoaccel.frontends.script import find_lr_script

    result = find_lr_script(
        args.script,
        tuple(args.script_args),
        config_path=args.config,
        batch_size=args.batch_size,
        min_lr=args.min_lr,
        max_lr=args.max_lr,
        steps=args.steps,
        timeout_s=args.timeout,
        console=progress_console(args),
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
    record = shlex.quote(str(result.record_path))
    summary.add_row("run record", f"{result.record_path}  (autoaccel report {record})")
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
        "record_path": str(result.record_path),
    }
    if finding.suggestion is not None:
        summary.add_row(
            "next",
            f"set `lr: {finding.suggestion:.3g}` in the config (the peak LR for batch "
            f"{result.batch_size}) or in your optimizer",
        )
    return CommandResult(data, [summary, curve])
