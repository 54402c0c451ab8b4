"""``autoaccel tune``: find the fastest config for a training script, measured."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from rich.table import Table

from autoaccel.budget import (
    DEFAULT_MAX_TRIALS,
    TRIAL_TIMEOUT_S,
    TUNE_BUDGET_S,
    TUNE_TTL_BUDGET_S,
)
from autoaccel.cli._common import (
    CommandResult,
    add_quiet,
    add_script,
    finite_number,
    parse_duration,
    positive_int,
    positive_number,
    progress_console,
)
from autoaccel.config import CONFIG_NAME
from autoaccel.confirm import CONFIRM_PAIRS
from autoaccel.progress import plain_console
from autoaccel.states import Objective

__all__ = ["EXAMPLE", "SUMMARY", "add_arguments", "run"]

SUMMARY = "Find the fastest config for a training script, measured."
EXAMPLE = (
    "autoaccel tune examples/train_cnn.py --budget 3m\n"
    "  autoaccel tune examples/train_cnn.py --objective time-to-loss --target 0.95 "
    "--metric accuracy\n"
    "  autoaccel tune train.py --max-trials 20 --out runs/autoaccel.yaml -- --epochs 100\n"
    "  autoaccel tune train.py --launch-config accelerate-config.yaml"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_script(parser)
    parser.add_argument(
        "--budget",
        type=parse_duration,
        help=f"wall-clock budget for everything, baseline included, e.g. 90s, 3m "
        f"(default {TUNE_BUDGET_S / 60:g}m; {TUNE_TTL_BUDGET_S / 60:g}m for time-to-loss)",
    )
    parser.add_argument(
        "--objective",
        choices=Objective.spellings(),
        default=Objective.THROUGHPUT.value,
        help="throughput: the most samples/s (a pick whose steps are not yours, in batch, "
        "split or precision, is kept only when its loss keeps pace with yours); "
        "time-to-loss: the soonest to a good model, with the LR schedule searched too "
        "(the script passes prepare() an evaluate hook; docs/integration.md). "
        "Default: throughput",
    )
    parser.add_argument(
        "--target",
        type=finite_number,
        help="time-to-loss: the held-out loss to reach sooner, or the value of --metric",
    )
    parser.add_argument(
        "--metric",
        help="time-to-loss: the entry of the evaluate hook's dict that --target is a value "
        "of, e.g. accuracy (higher is better when the untrained model scores below it)",
    )
    parser.add_argument(
        "--keep-global-batch",
        action="store_true",
        help="keep the script's global batch (batch x accumulation): the micro-batch is "
        "searched with accumulation, so the LR and how each step learns stay yours",
    )
    parser.add_argument(
        "--launch-config",
        type=Path,
        metavar="FILE",
        help="the Accelerate config (accelerate launch --config_file) or DeepSpeed config "
        "(ds_config.json) you train with: its processes, precision, compilation, batch and "
        "accumulation are your setup, the baseline every pick is measured against",
    )
    parser.add_argument(
        "--horizon",
        type=parse_duration,
        help="time-to-loss: training time your setup gets to set the losses to beat "
        "(default: your script's own training where its Trainer says how long it is and "
        "that fits, else a tenth of what the throughput search leaves)",
    )
    parser.add_argument(
        "--max-trials",
        type=positive_int,
        default=DEFAULT_MAX_TRIALS,
        help=f"at most this many trials (default {DEFAULT_MAX_TRIALS})",
    )
    parser.add_argument(
        "--storage", help="Optuna storage URL or SQLite path (default .autoaccel/studies.db)"
    )
    parser.add_argument(
        "--study", help="study name (default: derived from the script; the same command resumes)"
    )
    parser.add_argument(
        "--trial-timeout",
        type=parse_duration,
        default=TRIAL_TIMEOUT_S,
        help=f"kill a trial after this long (default {TRIAL_TIMEOUT_S / 60:g}m)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write the config (default: autoaccel.yaml beside the script)",
    )
    parser.add_argument(
        "--window", type=positive_number, help="seconds measured per trial (default 1.5)"
    )
    parser.add_argument("--seed", type=int, help="seed of the sampler")
    parser.add_argument(
        "--confirm-pairs",
        type=positive_int,
        default=CONFIRM_PAIRS,
        help=f"interleaved baseline/best pairs that confirm the speedup (default {CONFIRM_PAIRS})",
    )
    add_quiet(parser)
    parser.add_argument(
        "--lr-find",
        action="store_true",
        help="after the search, run an LR range test at the picked batch size and write its "
        "suggestion as the config's lr",
    )


def run(args: argparse.Namespace) -> CommandResult:
    """Search the fastest config for a training script."""
    # Imported here, not at the top: torch and Optuna cost 1-2 s, which `--help`,
    # `show` and `export` should not pay.
    from autoaccel.frontends.script import tune_script
    from autoaccel.launchers import read_launch
    from autoaccel.measure import MeterSettings
    from autoaccel.pipeline import TUNE, PipelineOptions

    settings = MeterSettings(window_s=args.window) if args.window else MeterSettings()
    options = PipelineOptions.checked(
        TUNE,
        objective=args.objective,
        budget_s=args.budget,
        target=args.target,
        metric=args.metric,
        max_trials=args.max_trials,
        keep_global_batch=args.keep_global_batch,
        storage=args.storage,
        study_name=args.study,
        seed=args.seed,
        settings=settings,
        confirm_pairs=args.confirm_pairs,
        horizon_s=args.horizon,
        trial_timeout_s=args.trial_timeout,
        lr_find=args.lr_find,
    )
    launch = read_launch(args.launch_config) if args.launch_config else None
    console = progress_console(args)
    out = args.out
    try:
        result = tune_script(
            args.script, tuple(args.script_args), options, out=out, console=console, launch=launch
        )
    except KeyboardInterrupt:
        where = out or args.script.parent / CONFIG_NAME
        saved = (
            f"the best config so far is in {where}"
            if Path(where).exists()
            else ("no config was written yet")
        )
        plain_console(stderr=True).print(
            f"autoaccel: interrupted; {saved}. Run the same command again to resume the study.",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        raise
    advice = result.advice
    paths = Table(title="Where things are", title_justify="left", show_header=False)
    paths.add_column("")
    paths.add_column("")
    written = f"written by worker {advice.written_by}" if advice.written_by else None
    paths.add_row("config", written or str(result.config_path))
    paths.add_row("trial logs", str(result.trials_dir))
    paths.add_row("study", f"{advice.search.study_name} in {result.storage}")
    dashboard = dashboard_command(result.storage)
    paths.add_row("dashboard", dashboard)
    # the commands are shell-quoted: a hint pasted as it is runs that, and nothing else
    record = shlex.quote(str(advice.record_path))
    paths.add_row("run record", f"{advice.record_path}  (autoaccel report {record})")
    paths.add_row("next", f"autoaccel run {shlex.quote(str(args.script))}")
    data = {
        **advice.to_dict(),
        "config_path": None if advice.written_by else str(result.config_path),
        "trials_dir": str(result.trials_dir),
        "record_path": str(advice.record_path),
        "dashboard": dashboard,
    }
    return CommandResult(data, [*advice.tables(), paths], notes=list(advice.notes))


def dashboard_command(storage: str) -> str:
    """The command that opens the study in optuna-dashboard (``pip install
    optuna-dashboard``), its password masked.

    Example:
        >>> dashboard_command("sqlite:///.autoaccel/studies.db")
        'optuna-dashboard sqlite:///.autoaccel/studies.db'
        >>> dashboard_command("postgresql://me:secret@db/s")
        "optuna-dashboard 'postgresql://me:***@db/s'  (your password for ***)"
    """
    from autoaccel.redact import mask_url

    shown = mask_url(storage)
    line = f"optuna-dashboard {shlex.quote(shown)}"
    return line + ("  (your password for ***)" if shown != storage else "")
