from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autoaccel.cli import build_parser, main
from autoaccel.config import Provenance, TrainingConfig, save_config

DATA = Path(__file__).parent.parent / "data" / "configs"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autoaccel.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_probe_json_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cpu"]["usable_cores"] >= 1
    assert {p["precision"] for p in data["precisions"]} == {
        "32-true",
        "tf32",
        "bf16-mixed",
        "16-mixed",
    }
    assert len(data["fingerprint"]) == 16


def test_probe_table_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe"]) == 0
    out = capsys.readouterr().out
    assert "usable cores" in out and "Precisions" in out and "bf16-mixed" in out


def test_show_prints_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(DATA / "v1.yaml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["config"]["batch_size"] == 256
    assert main(["show", str(DATA / "v1.yaml")]) == 0
    assert "bf16-mixed" in capsys.readouterr().out


def test_show_warns_about_other_hardware(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = save_config(
        TrainingConfig(provenance=Provenance(hardware_fingerprint="f" * 16, hardware="8x H100")),
        tmp_path / "a.yaml",
    )
    assert main(["show", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "measured on other hardware (8x H100" in err


def test_show_defaults_to_autoaccel_yaml_in_the_working_directory(tmp_path: Path) -> None:
    save_config(TrainingConfig(batch_size=77), tmp_path / "autoaccel.yaml")
    result = run_cli("show", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["config"]["batch_size"] == 77


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "config file not found"),
        ("batch_size: [\n", "not valid YAML"),
        ("batch_size: 0\nnum_workers: -1\n", "2 problems: batch_size: must be >= 1"),
        ("precision: fp8\n", "precision: expected one of"),
        ("schema_version: 2\n", "schema_version: 2 is newer"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "autoaccel.yaml"
    if text is not None:
        path.write_text(text)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_cli("show", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autoaccel: error: ") and message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run_cli("show", str(tmp_path / "missing.yaml"), "--debug")
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_usage_errors_exit_2() -> None:
    assert run_cli("frobnicate").returncode == 2
    assert run_cli().returncode == 2


def test_a_scripts_own_arguments_without_the_separator_say_where_they_go() -> None:
    """`autoaccel run train.py --epochs 1` (as one would type it first): one line that says
    the script's arguments go after --, exit 2."""
    result = run_cli("run", "train.py", "--epochs", "1")
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "unrecognized arguments: --epochs 1" in line and "go after --" in line
    assert "\n" not in line


def test_every_command_has_help_with_an_example() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert commands
    for name, sub in commands.items():
        text = sub.format_help()
        assert "example:" in text and f"autoaccel {name}" in text, name
        assert "--json" in text and "--debug" in text, name


V1 = str(Path(__file__).parent.parent / "data/configs/v1.yaml")


@pytest.mark.parametrize("argv", [["--help"], ["show", V1], ["export", V1, "--to", "deepspeed"]])
def test_help_show_and_export_do_not_load_torch(argv: list[str]) -> None:
    """torch costs ~1 s to import (more on a busy machine): the quick commands skip it."""
    code = (
        "import sys\nfrom autoaccel.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_errors_are_json_under_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(tmp_path / "missing.yaml"), "--json"]) == 2
    error = json.loads(capsys.readouterr().out)
    assert error["kind"] == "ConfigError" and "config file not found" in error["error"]
    assert main(["tune", "x.py", "--budget", "soon", "--json"]) == 2  # argparse's own errors too
    error = json.loads(capsys.readouterr().out)
    assert "expected a duration" in error["error"] and error["exit_code"] == 2


def test_shell_completion_completes_commands_and_options() -> None:
    script = subprocess.run(
        [sys.executable, "-m", "autoaccel.cli", "--completion", "bash"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    probe = (
        f"{script}\nCOMP_WORDS=(autoaccel tune --bu); COMP_CWORD=2; _autoaccel; "
        'echo "${COMPREPLY[@]}"; COMP_WORDS=(autoaccel ex); COMP_CWORD=1; _autoaccel; '
        'echo "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["--budget", "export"]


GLOO = "closing tag '[/__w/pytorch/third_party/gloo/transport/tcp/pair.cc:553]' [bold]x"


def test_text_from_scripts_and_libraries_is_never_markup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 36, 24: a gloo error's '[/...]' in a table cell, a warning and a note prints
    as it is (it once ended a tune with rich's MarkupError, exit 1)."""
    import io

    from rich.table import Table

    from autoaccel.cli import render
    from autoaccel.cli._common import CommandResult
    from autoaccel.progress import plain_console
    from autoaccel.report import render_report

    monkeypatch.setenv("COLUMNS", "400")  # one line per row
    path = tmp_path / "autoaccel.yaml"
    save_config(TrainingConfig(provenance=Provenance(evidence={"batch_size": GLOO})), path)
    assert main(["show", str(path)]) == 0
    assert GLOO in capsys.readouterr().out
    out, err = plain_console(record=True, width=200), plain_console(record=True, width=200)
    table = Table("trial", "failure")
    table.add_row("7", GLOO)
    result = CommandResult({"failure": GLOO}, [table], warnings=[GLOO], notes=[GLOO])
    render(result, as_json=False, out=out, err=err)  # lines and a table cell
    assert err.export_text().count(GLOO) == 2 and GLOO in out.export_text()
    machine = io.StringIO()
    render(result, as_json=True, out=plain_console(file=machine), err=plain_console(record=True))
    assert json.loads(machine.getvalue())["failure"] == GLOO
    # the run record's report: the same text, escaped into the page
    record = json.loads((Path(__file__).parents[2] / "bench/data/summary.json").read_text())
    record["notes"] = [GLOO]
    assert "&#x27;[/__w/pytorch/third_party/gloo/transport/tcp/pair.cc:553]&#x27; [bold]x" in (
        render_report(record)
    )


def test_show_never_sends_a_config_s_escape_sequences_to_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 36, 14: a config's control characters are shown escaped, not obeyed."""
    path = tmp_path / "autoaccel.yaml"
    hostile = "x\x1b]0;pwned\x07\x1b[2J y"
    save_config(TrainingConfig(provenance=Provenance(hardware=hostile)), path)
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[2J" in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--nnodes", "2", "--rdzv-endpoint", "node1:２９４００"], "must be HOST:PORT"),
        (["--nnodes", "2", "--rdzv-endpoint", "node 1:29400"], "must be HOST:PORT"),
        (["--nnodes", "2", "--rdzv-endpoint", "n;rm -rf /:29400"], "must be HOST:PORT"),
        (["--nnodes", "2", "--rdzv-endpoint", "node1\n:29400"], "must be HOST:PORT"),
        (["--nnodes", "2", "--rdzv-endpoint", "node1:29400:1"], "must be HOST:PORT"),
        (["--nnodes", "2", "--rdzv-endpoint", "node1:70000"], "must be HOST:PORT"),
        (["--nnodes", "100000", "--rdzv-endpoint", "node1:29400"], "--nnodes must be 1 to"),
        (["--nnodes", "2", "--rdzv-endpoint", "n:1", "--rdzv-id", ""], "--rdzv-id must be"),
        (["--rdzv-endpoint", "node1:29400"], "give --nnodes above 1 with it"),
    ],
)
def test_node_arguments_are_checked_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    """Issue 36, 13: what reaches torchrun's command line is a host, a port and a name."""
    script = tmp_path / "train.py"
    script.write_text("import autoaccel\nautoaccel.prepare(model, optimizer, data)\n")
    assert main(["run", str(script), *args, "--print"]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("endpoint", ["node1:29400", "10.0.0.7:29400", "[fe80::1]:29400"])
def test_good_endpoints_pass_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], endpoint: str
) -> None:
    script = tmp_path / "train.py"
    script.write_text("import autoaccel\nautoaccel.prepare(model, optimizer, data)\n")
    args = ["run", str(script), "--nnodes", "2", "--rdzv-endpoint", endpoint, "--print"]
    assert main(args) == 2  # the nodes pass; what stops it is the missing config
    assert "no autoaccel.yaml beside" in capsys.readouterr().err
