"""Each example is tunable, and `autoaccel run` then trains with what tune wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autoaccel.config import load_config

EXAMPLES = Path(__file__).parent.parent / "examples"


def cli(*args: str, cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autoaccel.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("example", "run_args", "tune_args"),
    [
        ("train_cnn.py", ["--epochs", "1", "--samples", "256"], []),
        ("train_lm.py", ["--steps", "3"], ["--lr-find", "--keep-global-batch"]),
    ],
)
def test_tune_then_run(
    tmp_path: Path, example: str, run_args: list[str], tune_args: list[str]
) -> None:
    out = tmp_path / "autoaccel.yaml"
    tuned = cli(
        "tune",
        str(EXAMPLES / example),
        *tune_args,
        "--budget",
        "60s",
        "--max-trials",
        "2",
        "--window",
        "0.4",
        "--confirm-pairs",
        "1",
        "--out",
        str(out),
        "--json",
        cwd=tmp_path,
    )
    assert tuned.returncode == 0, tuned.stderr[-2000:]
    data = json.loads(tuned.stdout)
    config = load_config(out)
    assert config.to_dict() == data["config"]
    assert config.provenance.command and config.provenance.command.startswith("autoaccel tune")
    assert config.provenance.measured["trials"] >= 1
    assert data["search"]["trials_measured"] <= 2
    if "--lr-find" in tune_args:  # the range test's suggestion is the config's lr
        if config.lr is not None:
            assert config.provenance.evidence["lr"].startswith("LR range test: lr ")
            assert config.lr_scaling == "none"
        else:
            assert any("LR range test gave no suggestion" in n for n in data["notes"])
    ran = cli("run", str(EXAMPLES / example), "--config", str(out), "--", *run_args, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert f"batch_size={config.batch_size} precision={config.precision}" in ran.stdout


def test_run_starts_torchrun_for_a_ddp_config(tmp_path: Path) -> None:
    from autoaccel.config import TrainingConfig, save_config

    config = save_config(
        TrainingConfig(batch_size=32, strategy="ddp", processes=2, num_threads=1),
        tmp_path / "ddp.yaml",
    )
    ran = cli(
        "run",
        str(EXAMPLES / "train_cnn.py"),
        "--config",
        str(config),
        "--",
        "--epochs",
        "1",
        "--samples",
        "256",
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "torch.distributed.run --standalone --nproc-per-node=2" in ran.stderr
    # each of the two processes trains half the data: 128 samples = 4 batches of 32
    assert ran.stdout.count("batch_size=32") == 2


def test_lr_find_on_an_example_at_the_configs_batch_size(tmp_path: Path) -> None:
    script = tmp_path / "train_lm.py"
    script.write_text((EXAMPLES / "train_lm.py").read_text())
    (tmp_path / "autoaccel.yaml").write_text("batch_size: 48\nlr: 0.5\nschedule: constant\n")
    found = cli("lr-find", str(script), "--steps", "25", "--json", cwd=tmp_path, timeout=300)
    assert found.returncode == 0, found.stderr
    data = json.loads(found.stdout)
    assert data["batch_size"] == 48 and data["config"].endswith("autoaccel.yaml")
    assert 5 <= len(data["raw_losses"]) <= 25
    assert data["lrs"] == sorted(data["lrs"]) and data["lrs"][0] == pytest.approx(1e-7)
    if data["suggestion"] is not None:
        assert data["lrs"][0] < data["suggestion"] < data["lrs"][-1]
    assert data["reason"]
    table = cli("lr-find", str(script), "--steps", "10", "--batch-size", "8", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    for part in ("LR range test", "suggested lr", "batch size", "Smoothed loss by lr"):
        assert part in table.stdout


def test_lr_find_refuses_a_bad_sweep(tmp_path: Path) -> None:
    bad = cli(
        "lr-find", str(EXAMPLES / "train_lm.py"), "--min-lr", "1", "--max-lr", "0.1", cwd=tmp_path
    )
    assert bad.returncode == 2
    assert "0 < min_lr < max_lr" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
