"""Issue 36, 23: the commands autoaccel suggests are shell-quoted, so that a hint pasted as
it is runs that command and nothing else, whatever the script is called."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import torch
from torch import nn

import autoaccel
from autoaccel.cli import main

ODD = "x$(touch pwned) [b].py"


def test_prepare_s_tune_hint_is_quoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", [str(tmp_path / ODD)])
    model = nn.Linear(2, 1)
    autoaccel.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1), None)
    hint = capsys.readouterr().err.split("Tune them with: ")[1].strip()
    assert shlex.split(hint) == ["autoaccel", "tune", ODD]


def test_run_s_tune_hint_is_quoted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / ODD
    script.write_text("import autoaccel\nautoaccel.prepare(model, optimizer, data)\n")
    assert main(["run", str(script)]) == 2
    hint = capsys.readouterr().err.split("`")[1]
    assert shlex.split(hint) == ["autoaccel", "tune", str(script)]
