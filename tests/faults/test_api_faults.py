"""Careless use of the Python API and the small commands: one line, exit 2 (or the right
signal code), nothing changed (issue 16, items 9, 16, 21, 24, 25, 26)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from models import tabular
from torch import nn

import autoaccel
from autoaccel.cli import main
from autoaccel.config import Provenance, TrainingConfig, save_config
from autoaccel.errors import UsageError
from autoaccel.runtime.run import model_fingerprint


def make(lr: float = 0.05) -> tuple[nn.Module, torch.optim.Optimizer]:
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    return model, torch.optim.SGD(model.parameters(), lr=lr)


# --- item 9: a config tuned for another script or model -----------------------------------


def tuned_for(script: str, model: nn.Module) -> TrainingConfig:
    return TrainingConfig(
        batch_size=64,
        lr=0.8,
        provenance=Provenance(script=script, model=model_fingerprint(model)),
    )


def test_a_config_for_another_model_keeps_the_scripts_lr_and_warns(tmp_path: Path) -> None:
    other = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 2))
    path = save_config(tuned_for(Path(sys.argv[0]).name, other), tmp_path / "autoaccel.yaml")
    model, optimizer = make(lr=0.05)
    with pytest.warns(UserWarning, match="tuned for another model .* NOT applied"):
        run = autoaccel.prepare(model, optimizer, tabular(), config=path)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)  # not 0.8
    assert run.batch_size == 64  # the system knobs still apply
    run.close()


def test_a_config_for_another_script_warns_and_its_own_applies(tmp_path: Path) -> None:
    model, optimizer = make(lr=0.05)
    elsewhere = save_config(tuned_for("other.py", model), tmp_path / "other.yaml")
    with pytest.warns(UserWarning, match="tuned for script other.py"):
        autoaccel.prepare(model, optimizer, tabular(), config=elsewhere).close()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    model, optimizer = make(lr=0.05)
    own = save_config(tuned_for(Path(sys.argv[0]).name, model), tmp_path / "own.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        autoaccel.prepare(model, optimizer, tabular(), config=own).close()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.8)


# --- items 21, 26: arguments of the wrong kind -----------------------------------------------


@pytest.mark.parametrize(
    ("budget_s", "message"),
    [
        ("20", "budget_s must be a number of seconds, got str '20'"),
        (float("nan"), "budget_s must be a positive, finite number"),
        (float("inf"), "budget_s must be a positive, finite number"),
        (-5, "budget_s must be a positive, finite number"),
    ],
)
def test_advise_refuses_a_budget_that_is_not_a_number(budget_s: object, message: str) -> None:
    model, _ = make()
    with pytest.raises(UsageError, match=message):
        autoaccel.advise(model, tabular(), budget_s=budget_s, progress=False)  # type: ignore[arg-type]


def test_a_time_to_loss_budget_message_quotes_the_budget_given() -> None:
    model, _ = make()
    with pytest.raises(UsageError, match=r"a budget of 5 s is too small") as caught:
        autoaccel.advise(model, tabular(), val_data=tabular(), budget_s=5, progress=False)
    assert "budget_s=1" not in str(caught.value)  # not the throughput share of it


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"config": 123}, "config must be a TrainingConfig or the path"),
        ({"model": "resnet"}, "model must be a torch.nn.Module, got str"),
        ({"optimizer": None}, "optimizer must be a torch.optim.Optimizer, got NoneType"),
    ],
)
def test_prepare_refuses_arguments_of_the_wrong_kind(
    kwargs: dict[str, object], message: str
) -> None:
    model, optimizer = make()
    arguments = {"model": model, "optimizer": optimizer, **kwargs}
    with pytest.raises(UsageError, match=message):
        autoaccel.prepare(
            arguments.pop("model"), arguments.pop("optimizer"), tabular(), **arguments
        )  # type: ignore[arg-type]


# --- item 24: AUTOACCEL_TRIAL left in the shell ---------------------------------------------


def test_a_stale_trial_variable_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOACCEL_TRIAL", "1")
    model, optimizer = make()
    with pytest.raises(UsageError, match=r"\$AUTOACCEL_TRIAL is set \('1'\) but names no trial"):
        autoaccel.prepare(model, optimizer, tabular())


# --- item 25: run quotes its command and reports a signal death as 128 + N ---------------------


def test_run_quotes_its_command_masks_secrets_and_reports_a_signal(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        "import os, signal, autoaccel  # prepare( is called by real scripts\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
    )
    save_config(TrainingConfig(), tmp_path / "autoaccel.yaml")
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "autoaccel.cli",
            "run",
            str(script),
            "--",
            "--name",
            "my run",
            "--token",
            "tk-SECRET",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 128 + signal.SIGTERM, ran.stderr
    assert "--name 'my run' --token '***'" in ran.stderr
    assert "tk-SECRET" not in ran.stderr + ran.stdout


# --- item 16: Ctrl-C while a command starts ------------------------------------------------


def test_ctrl_c_while_a_command_starts_prints_no_traceback(tmp_path: Path) -> None:
    """`show` loads no torch any more (0.2 s): `probe` stands in for a command that does.
    Ctrl-C comes once torch's library is mapped into the process (it is loading), not after
    a fixed sleep, so a slow or busy machine tests the same moment."""
    command = subprocess.Popen(
        [sys.executable, "-c", "from autoaccel.cli import main; raise SystemExit(main())", "probe"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    maps = Path(f"/proc/{command.pid}/maps")
    deadline = time.monotonic() + 60
    while command.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if "libtorch" in maps.read_text():
                break
        time.sleep(0.01)
    assert command.poll() is None, "probe ended before torch loaded: nothing was tested"
    command.send_signal(signal.SIGINT)
    _, err = command.communicate(timeout=60)
    assert "Traceback" not in err
    assert command.returncode == 130, err
    assert "autoaccel: interrupted" in err


def test_main_restores_the_signal_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    assert main(["show", os.devnull]) == 2
    assert signal.getsignal(signal.SIGTERM) is before
