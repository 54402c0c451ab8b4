"""The ``autoaccel`` command line: one module per command (``probe``, ``show``, ``tune``,
``lr-find``, ``run``), each with ``SUMMARY``, ``EXAMPLE``, ``add_arguments`` and ``run``.

Every command builds plain data first (``CommandResult.data``, what ``--json`` prints and
what tests check), then renders it as tables. Exit codes: 0 ok, 1 runtime failure, 2 usage
or bad input. Errors are one line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType
from typing import Any, NoReturn

from rich.console import Console
from rich.text import Text

from autoaccel._version import __version__
from autoaccel.cli._common import CommandResult, parse_duration
from autoaccel.errors import (
    AutoaccelError,
    Interrupted,
    TrialError,
    UsageError,
    disk_full,
    interrupts_deferred,
    interrupts_from_signals,
)
from autoaccel.progress import plain_console
from autoaccel.record import json_ready

__all__ = [
    "COMMANDS",
    "CommandResult",
    "build_parser",
    "completion_script",
    "main",
    "parse_duration",
    "render",
]

#: Each command's name and module, in the order ``--help`` lists them (imported when the
#: parser is built, inside ``main``'s error handling: Ctrl-C while torch loads is caught).
COMMANDS: dict[str, str] = {
    "probe": "autoaccel.cli.probe",
    "show": "autoaccel.cli.show",
    "tune": "autoaccel.cli.tune",
    "lr-find": "autoaccel.cli.lr_find",
    "run": "autoaccel.cli.run",
    "export": "autoaccel.cli.export",
    "report": "autoaccel.cli.report",
}


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors raised as ``UsageError``: one line, exit 2, and JSON
    under ``--json`` like every other error."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments"):  # most often the script's own
            message += (
                "; your script's own arguments go after --, e.g. autoaccel run train.py -- "
                "--epochs 5"
            )
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of tables")
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser = _Parser(
        prog="autoaccel",
        description="Make PyTorch training run as fast as this machine allows, and prove it.",
        epilog="example:\n  autoaccel probe\n  autoaccel tune examples/train_cnn.py --budget 2m\n"
        "  autoaccel run examples/train_cnn.py\n  autoaccel show examples/autoaccel.yaml\n"
        "  autoaccel export examples/autoaccel.yaml --to lightning",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"autoaccel {__version__}")
    parser.add_argument(
        "--completion",
        choices=("bash", "zsh"),
        action=_Completion,
        help='print a shell completion script: eval "$(autoaccel --completion bash)"',
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module: ModuleType = importlib.import_module(module_name)
        sub = commands.add_parser(
            name,
            parents=[common],
            help=module.SUMMARY,
            description=module.SUMMARY,
            epilog=f"example:\n  {module.EXAMPLE}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def render(result: CommandResult, *, as_json: bool, out: Console, err: Console) -> None:
    """Print a command's result for people or, with ``--json``, for machines."""
    for warning in result.warnings:
        err.print(Text.assemble(("warning:", "yellow"), f" {warning}"), soft_wrap=True)
    for note in result.notes:
        err.print(f"note: {note}", soft_wrap=True, highlight=False, markup=False)
    if as_json:
        out.file.write(json.dumps(json_ready(result.data), indent=2, default=str) + "\n")
        return
    if result.text is not None:
        out.file.write(result.text)
    for table in result.tables:
        out.print(table)


#: Commands that do not load torch (quick: ~0.2 s); the others load it first.
TORCHLESS = ("show", "export")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code.

    SIGTERM and SIGHUP stop it as Ctrl-C does (the running trial's process group killed,
    the best config so far kept) and exit with 128 + the signal's number.
    """
    err = plain_console(stderr=True)
    with interrupts_from_signals():
        try:
            return _main(argv, err)
        except Interrupted as stop:
            err.print(f"autoaccel: stopped by {stop.name}", highlight=False)
            return 128 + stop.signum
        except KeyboardInterrupt:
            err.print("autoaccel: interrupted", highlight=False)
            return 130


def _main(argv: Sequence[str] | None, err: Console) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args: list[str] = []
    if "--" in argv:  # everything after -- belongs to the training script
        split = argv.index("--")
        argv, script_args = argv[:split], argv[split + 1 :]
    as_json = "--json" in argv
    out = plain_console()
    try:
        args = build_parser().parse_args(argv)
        args.script_args = script_args
        if args.command not in TORCHLESS:
            with interrupts_deferred():  # a Ctrl-C now would abort torch's start-up
                import torch  # noqa: F401
        result = args.handler(args)
    except AutoaccelError as error:
        if "--debug" in argv:
            traceback.print_exc()
        _error(error, error.exit_code, as_json=as_json, out=out, err=err)
        return error.exit_code
    except Exception as error:
        if "--debug" in argv:
            traceback.print_exc()
        full = disk_full(error)  # the machine's state, not a bug: said as such
        shown: Exception = TrialError(full) if full else error
        _error(shown, 1, as_json=as_json, out=out, err=err, internal=full is None)
        return 1
    render(result, as_json=as_json, out=out, err=err)
    return result.exit_code


def _error(
    error: Exception,
    exit_code: int,
    *,
    as_json: bool,
    out: Console,
    err: Console,
    internal: bool = False,
) -> None:
    """One line on stderr; with ``--json``, also a JSON object on stdout for machines."""
    if internal:
        line = (
            f"autoaccel: internal error: {type(error).__name__}: {error} "
            "(rerun with --debug and report it)"
        )
    else:
        line = f"autoaccel: error: {error}"
    err.print(line, soft_wrap=True, highlight=False, markup=False)
    if as_json:
        payload = {"error": str(error), "kind": type(error).__name__, "exit_code": exit_code}
        out.file.write(json.dumps(payload) + "\n")


class _Completion(argparse.Action):
    """``--completion bash|zsh``: a completion script built from the parser itself."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: Any,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        sys.stdout.write(completion_script(parser, str(values)))
        parser.exit()


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """Bash (or zsh, through bashcompinit) completion of commands, their options and files.

    Example:
        >>> "complete -o default -F _autoaccel autoaccel" in completion_script(
        ...     build_parser(), "bash")
        True
    """
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cases = []
    for name, sub in commands.choices.items():
        options = sorted(o for a in sub._actions for o in a.option_strings)
        cases.append(f'        {name}) opts="{" ".join(options)}" ;;')
    names = " ".join(commands.choices)
    top = " ".join(o for a in parser._actions for o in a.option_strings)
    lines = [
        '# autoaccel completion: eval "$(autoaccel --completion SHELL)"',
        *(["autoload -U +X bashcompinit && bashcompinit"] if shell == "zsh" else []),
        "_autoaccel() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" opts',
        '    if [ "$COMP_CWORD" -eq 1 ]; then',
        f'        COMPREPLY=($(compgen -W "{names} {top}" -- "$cur")); return',
        "    fi",
        '    case "${COMP_WORDS[1]}" in',
        *cases,
        "        *) opts= ;;",
        "    esac",
        '    if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "$opts" -- "$cur")); fi',
        "}",
        "complete -o default -F _autoaccel autoaccel",
    ]
    return "\n".join(lines) + "\n"
