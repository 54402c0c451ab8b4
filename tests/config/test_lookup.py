"""One config lookup: prepare(), `autoaccel run`, `show` and `lr-find` pick the same file."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoaccel.config import CONFIG_ENV, TrainingConfig, find_config, save_config
from autoaccel.errors import ConfigError

SCRIPT = """\
import torch, autoaccel
model = torch.nn.Linear(4, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
run = autoaccel.prepare(model, optimizer, (torch.randn(64, 4), torch.randint(0, 2, (64,))))
print(f"batch_size={run.batch_size}")
"""


@pytest.fixture
def two_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """project/train.py beside project/autoaccel.yaml (batch 48); the working directory,
    another folder, holds its own autoaccel.yaml (batch 64)."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "train.py").write_text(SCRIPT)
    save_config(TrainingConfig(batch_size=48), project / "autoaccel.yaml")
    save_config(TrainingConfig(batch_size=64), elsewhere / "autoaccel.yaml")
    monkeypatch.chdir(elsewhere)
    yield project / "train.py"


def test_the_order(two_configs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project, elsewhere = two_configs.parent, Path.cwd()
    assert find_config(script=two_configs) == project / "autoaccel.yaml"  # beside the script
    assert find_config() == elsewhere / "autoaccel.yaml"  # no script: the working directory
    named = save_config(TrainingConfig(batch_size=8), tmp_path / "named.yaml")
    monkeypatch.setenv(CONFIG_ENV, str(named))
    assert find_config(script=two_configs) == named  # $AUTOACCEL_CONFIG before both
    explicit = save_config(TrainingConfig(batch_size=4), tmp_path / "explicit.yaml")
    assert find_config(explicit, script=two_configs) == explicit  # what you name, first
    with pytest.raises(ConfigError, match=r"--config names .*gone\.yaml, which does not exist"):
        find_config(tmp_path / "gone.yaml", origin="--config")
    (project / "autoaccel.yaml").unlink()
    monkeypatch.delenv(CONFIG_ENV)
    assert find_config(script=two_configs) == elsewhere / "autoaccel.yaml"


def test_python_and_autoaccel_run_pick_the_same_file(two_configs: Path) -> None:
    """From another folder with its own autoaccel.yaml, both run with the one beside the
    script (before, `python train.py` took the working directory's)."""
    plain = subprocess.run(
        [sys.executable, str(two_configs)], capture_output=True, text=True, timeout=120
    )
    ran = subprocess.run(
        [sys.executable, "-m", "autoaccel.cli", "run", str(two_configs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plain.returncode == 0 and ran.returncode == 0, plain.stderr + ran.stderr
    assert plain.stdout.strip() == ran.stdout.strip() == "batch_size=48"
    assert str(two_configs.parent / "autoaccel.yaml") in ran.stderr
