"""``autoaccel report``: a run record (``summary.json``) as one HTML page, with plots."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from autoaccel.atomic import atomic_write_text
from autoaccel.cli._common import CommandResult
from autoaccel.errors import UsageError
from autoaccel.frontends.outputs import check_replaceable
from autoaccel.record import RECORD_NAME

__all__ = ["EXAMPLE", "SUMMARY", "add_arguments", "run"]

SUMMARY = "Turn a run record (summary.json) into an HTML report with plots."
EXAMPLE = (
    "autoaccel report                        # the newest run under ./.autoaccel\n"
    "  autoaccel report .autoaccel/trials/train-20261127-101500-4242/summary.json --out r.html"
)

#: Where tune and advise() leave their run records, under the working folder.
RECORDS = (
    ".autoaccel/trials/*/summary.json",
    ".autoaccel/runs/*/summary.json",
    ".autoaccel/lr-find/*/summary.json",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "record",
        nargs="?",
        type=Path,
        help=f"a run record ({RECORD_NAME}; default: the newest under ./.autoaccel)",
    )
    parser.add_argument("--out", type=Path, help="the HTML file (default: report.html beside it)")


def run(args: argparse.Namespace) -> CommandResult:
    """Write the HTML page for a run record."""
    from autoaccel.report import render_report

    path = args.record or _newest()
    if path.is_dir():
        path = path / RECORD_NAME
    out = args.out or path.with_name("report.html")
    check_replaceable(out, ours=is_report, kind="report", name="report.html")
    try:
        record = json.loads(_read_record(path))
        page = render_report(record)
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist; name a {RECORD_NAME} that tune wrote") from None
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        ArithmeticError,
        RecursionError,
    ) as error:  # a record autoaccel did not write, or one edited into another shape
        raise UsageError(
            f"{path} is not an autoaccel run record ({type(error).__name__}: {error}); name a "
            f"{RECORD_NAME} that `autoaccel tune` or advise() wrote"
        ) from None
    atomic_write_text(out, page)
    return CommandResult(
        {"record": str(path), "report": str(out)}, text=f"wrote {out} (open it in a browser)\n"
    )


#: A run record is tens of kilobytes; a file far larger is not one (nor is /dev/zero).
MAX_RECORD_BYTES = 64 * 2**20


def _read_record(path: Path) -> str:
    """The record's text, read only from a regular file of a record's size.

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: it is not a regular file, or far too large for a run record.
    """
    if path.exists() and not path.is_file():
        raise ValueError("not a regular file")
    with path.open("rb") as handle:
        data = handle.read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError(f"larger than {MAX_RECORD_BYTES // 2**20} MiB")
    return data.decode()


#: What every report starts with (``autoaccel.report.render_report``): what --out may replace.
REPORT_START = "<!DOCTYPE html>"
REPORT_TITLE = "<title>autoaccel report:"


def is_report(path: Path) -> bool:
    """Whether ``path`` is a report autoaccel wrote (its start and title), read no further
    than its first lines."""
    try:
        with path.open("rb") as handle:
            head = handle.read(512).decode(errors="replace")
    except OSError:
        return False
    return head.startswith(REPORT_START) and REPORT_TITLE in head


def _newest() -> Path:
    found = [p for pattern in RECORDS for p in Path.cwd().glob(pattern)]
    if not found:
        raise UsageError(
            f"no run record under ./.autoaccel; run `autoaccel tune` first, or name a {RECORD_NAME}"
        )
    return max(found, key=lambda p: p.stat().st_mtime)
