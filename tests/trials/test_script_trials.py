"""Script trials for real: subprocesses, process groups, timeouts, failures."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from autoaccel.config import TrainingConfig
from autoaccel.errors import UsageError
from autoaccel.measure import MeterSettings
from autoaccel.trials.script import ScriptRunner, check_script

SHORT = MeterSettings(
    min_warmup_steps=2,
    settle_steps=2,
    settle_tolerance=1.0,
    max_warmup_s=1.0,
    window_s=0.3,
    min_window_steps=3,
    blocks=3,
)
# A measured window of 20 steps at the least, for tests that read what a trial does after
# your own training's 8 steps: on a slow machine SHORT's warm-up ends on time after one step
# and its window after 3 (a CI run measured 14 steps of a trial)
PAST_YOURS = dataclasses.replace(SHORT, min_window_steps=20)

SCRIPT = """
import os, sys, time
import torch
from torch import nn
import autoaccel

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 2)
    def forward(self, x):
        {forward}
        return self.lin(x)

model = Net()
opt = torch.optim.SGD(model.parameters(), lr={lr})
x, y = torch.randn(4096, 8) * {scale}, torch.randint(0, 2, (4096,))
run = autoaccel.prepare(model, opt, (x, y), loader_kwargs={{"batch_size": 32}})
for epoch in range({epochs}):
    for xb, yb in run.loader:
        with run.autocast():
            target = torch.nn.functional.one_hot(yb, 2).float()
            loss = torch.nn.functional.mse_loss(run.model(xb), target)
        try:
            run.backward(loss)
            run.step()
        except Exception:
            pass  # a user's broad except must not swallow the end of a trial
"""


def script(
    tmp_path: Path,
    *,
    forward: str = "pass",
    lr: float = 0.1,
    scale: float = 1.0,
    epochs: str = "10**6",
) -> Path:
    path = tmp_path / "train.py"
    path.write_text(SCRIPT.format(forward=forward, lr=lr, scale=scale, epochs=epochs))
    return path


def runner(
    path: Path, tmp_path: Path, timeout_s: float = 60, settings: MeterSettings = SHORT
) -> ScriptRunner:
    return ScriptRunner(
        path, (), trials_dir=tmp_path / "trials", settings=settings, timeout_s=timeout_s
    )


def test_a_trial_measures_and_reports_the_scripts_settings(tmp_path: Path) -> None:
    trial = runner(script(tmp_path), tmp_path).run(None)
    assert trial.reached_prepare and trial.returncode == 0
    assert trial.measurement.ok and trial.measurement.samples_per_s > 0
    assert trial.report is not None
    assert trial.report.user_config["batch_size"] == 32
    assert trial.report.dataset_size == 4096 and trial.report.tensor_data
    assert (tmp_path / "trials" / "0000" / "log.txt").exists()


def test_a_trial_applies_its_config(tmp_path: Path) -> None:
    config = TrainingConfig(batch_size=128, batch_fetch=True, num_threads=1)
    trial = runner(script(tmp_path), tmp_path).run(config)
    assert trial.measurement.ok
    assert trial.measurement.samples / trial.measurement.window_steps == 128


def test_out_of_memory_in_the_scripts_code(tmp_path: Path) -> None:
    path = script(tmp_path, forward="if x.shape[0] > 64: torch.empty(2**62, dtype=torch.uint8)")
    trial = runner(path, tmp_path).run(TrainingConfig(batch_size=128))
    assert trial.measurement.outcome == "oom"
    assert "can't allocate memory" in trial.measurement.message


def test_divergence(tmp_path: Path) -> None:
    trial = runner(script(tmp_path, lr=1e8, scale=1e6), tmp_path).run(None)
    assert trial.measurement.outcome == "diverged"


def test_a_script_ending_too_soon_says_so(tmp_path: Path) -> None:
    path = script(tmp_path, epochs="1")
    trial = runner(path, tmp_path).run(TrainingConfig(batch_size=2048))
    assert trial.measurement.outcome == "error"
    assert "ended after 2 steps, before the measurement finished" in trial.measurement.message


def test_a_hanging_trial_is_killed_with_its_process_group(tmp_path: Path) -> None:
    """The script starts a child and hangs. It imports no torch, so it reaches its hang in
    a moment even on a busy machine, and a short timeout tests the kill."""
    pid_file = tmp_path / "child.pid"
    path = tmp_path / "train.py"
    path.write_text(
        "import subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(c.pid))\n"
        "time.sleep(600)\n"
    )
    started = time.monotonic()
    trial = runner(path, tmp_path, timeout_s=4).run(None)
    assert time.monotonic() - started < 30
    assert trial.measurement.outcome == "timeout", trial.measurement
    assert "4 s trial timeout" in trial.measurement.message
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while psutil.pid_exists(child) and time.monotonic() < deadline:
        if psutil.Process(child).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.1)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize(
    ("text", "name", "match"),
    [
        (None, "missing.py", r"missing\.py does not exist"),
        ("echo hi\n", "train.sh", r"train\.sh is not a Python file"),
        ("def broken(:\n", "train.py", r"train\.py is not valid Python \(line 1"),
        (
            "import torch\nprint('training')\n",
            "train.py",
            r"never calls autoaccel\.prepare\(\).*\n.*import autoaccel",
        ),
    ],
)
def test_scripts_that_cannot_be_tuned(
    tmp_path: Path, text: str | None, name: str, match: str
) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(UsageError, match=match):
        check_script(path)
    result = subprocess.run(
        [sys.executable, "-m", "autoaccel.cli", "tune", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("autoaccel: error: ")
    assert not (tmp_path / ".autoaccel" / "studies.db").exists()  # no search over failures


def test_a_script_that_fails_before_its_first_step(tmp_path: Path) -> None:
    path = script(tmp_path, forward="raise ValueError('shapes do not match')")
    result = subprocess.run(
        [sys.executable, "-m", "autoaccel.cli", "tune", str(path), "--window", "0.3"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "fails with its own settings (error: ValueError: shapes do not match)" in result.stderr
    assert not (tmp_path / ".autoaccel" / "studies.db").exists()


def test_a_script_that_mentions_prepare_but_never_reaches_it(tmp_path: Path) -> None:
    path = tmp_path / "train.py"
    path.write_text("import sys\n# autoaccel.prepare(model, optimizer) comes later\nsys.exit(0)\n")
    result = subprocess.run(
        [sys.executable, "-m", "autoaccel.cli", "tune", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert "ended without reaching autoaccel.prepare()" in result.stderr


@pytest.mark.slow
def test_a_stop_keeps_the_best_so_far_and_the_study_resumes(tmp_path: Path) -> None:
    """Ctrl-C in the middle of the search. SIGTERM and SIGHUP stop tune as Ctrl-C does
    (one handler, ``autoaccel.cli.main``); tests/faults/test_tune_faults.py sends them."""
    signum = signal.SIGINT
    path = script(tmp_path)
    out = tmp_path / "autoaccel.yaml"
    command = [
        sys.executable,
        "-m",
        "autoaccel.cli",
        "tune",
        str(path),
        "--window",
        "0.3",
        "--budget",
        "5m",
        "--keep-global-batch",  # no convergence check: this is about stopping and resuming
        "--out",
        str(out),
    ]
    tune = subprocess.Popen(
        command,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        # Ctrl-C as a terminal delivers it: a suite started as a background job (`cmd &`)
        # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    trials = tmp_path / ".autoaccel" / "trials"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait for the second trial to start
        started = list(trials.glob("*/0001/started")) if trials.exists() else []
        if started:
            break
        time.sleep(0.2)
    assert started, "the search never reached its second trial"
    os.kill(tune.pid, signum)
    try:
        _, err = tune.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # show where it hangs: faulthandler dumps on SIGABRT
        os.kill(tune.pid, signal.SIGABRT)
        _, err = tune.communicate(timeout=30)
        pytest.fail(f"tune did not stop within 60 s of Ctrl-C; its threads:\n{err[-6000:]}")
    assert tune.returncode == 128 + signum, err
    assert "interrupted; the best config so far is in" in err
    assert out.exists()  # the baseline, the best so far, was saved
    with sqlite3.connect(tmp_path / ".autoaccel" / "studies.db") as db:  # the study is intact
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    for proc in psutil.process_iter(["cmdline"]):
        assert str(path) not in " ".join(proc.info["cmdline"] or []), "a trial was left running"
    again = subprocess.run(
        [*command, "--max-trials", "1", "--confirm-pairs", "1", "--budget", "30s"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert "trial #0" not in again.stderr  # the baseline came from the stored study


@pytest.mark.slow
def test_a_two_process_ddp_trial_under_torchrun(tmp_path: Path) -> None:
    config = TrainingConfig(batch_size=64, strategy="ddp", processes=2, num_threads=1)
    trial = runner(script(tmp_path), tmp_path, timeout_s=120).run(config)
    assert trial.measurement.ok, trial.log_tail()
    assert trial.report is not None and trial.report.world_size == 2
    # samples count across both processes: each step trains 2 x 64 samples
    assert trial.measurement.samples == 2 * 64 * trial.measurement.window_steps
    assert "torch.distributed.run" in trial.log_path.read_text().splitlines()[0]
    # Pruned, its words quote the trial's rate (both processes), as its samples/s does;
    # they quoted rank 0's alone (issue 34).
    pruned = runner(script(tmp_path), tmp_path, timeout_s=120).run(config, prune_below=1e12)
    assert pruned.measurement.outcome == "pruned", pruned.log_tail()
    quoted = float(
        pruned.measurement.message.split(": ")[1].split(" samples/s")[0].replace(",", "")
    )
    assert quoted == pytest.approx(pruned.measurement.samples_per_s, abs=1.0)


def test_runners_sharing_a_folder_never_share_a_trial_folder(tmp_path: Path) -> None:
    """Two tunes of one script once raced on trial folders (FileExistsError)."""
    from concurrent.futures import ThreadPoolExecutor

    path = script(tmp_path)
    runners = [runner(path, tmp_path) for _ in range(4)]
    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda i: runners[i % 4]._folder(), range(200)))
    assert len(set(folders)) == 200


def test_a_real_out_of_memory_error_in_a_script_is_a_finding(tmp_path: Path) -> None:
    """torch.OutOfMemoryError, as CUDA raises it, from the script's own forward."""
    oom = (
        "if x.shape[0] > 64: raise torch.OutOfMemoryError("
        "'CUDA out of memory. Tried to allocate 20.00 GiB')"
    )
    trial = runner(script(tmp_path, forward=oom), tmp_path).run(TrainingConfig(batch_size=128))
    assert trial.measurement.outcome == "oom", trial.log_tail()
    assert "Tried to allocate" in trial.measurement.message
    assert runner(script(tmp_path, forward=oom), tmp_path).run(None).measurement.ok  # batch 32


YOUR_SCHEDULE = """
import os
import torch
from torch import nn
import autoaccel

os.chdir(os.path.dirname(os.path.abspath(__file__)))
model = nn.Linear(8, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
schedule = torch.optim.lr_scheduler.{schedule}  # over 1 epoch of 8 steps
x, y = torch.randn(256, 8), torch.randint(0, 2, (256,))
run = autoaccel.prepare(
    model, opt, (x, y), loader_kwargs={{"batch_size": 32}}, scheduler=schedule
)
for epoch in range(10**6 if autoaccel.in_trial() else 1):
    for xb, yb in run.loader:
        with open("lrs.txt", "a") as out:
            out.write(f"{{opt.param_groups[0]['lr']}}\\n")
        run.backward(nn.functional.cross_entropy(run.model(xb), yb))
        run.step()
"""


@pytest.mark.parametrize(
    "schedule",
    ["OneCycleLR(opt, max_lr=0.1, total_steps=8)", "CosineAnnealingLR(opt, T_max=8)"],
    ids=["one-cycle", "cosine"],
)
def test_your_schedule_holds_its_last_lr_in_a_trial(tmp_path: Path, schedule: str) -> None:
    """A trial trains on past your own training (10**6 epochs, as the examples write it).
    A OneCycleLR of yours, stepped by run.step(), raised there ("Tried to step 9 times")
    and failed every trial; a cosine climbed back to its peak after its T_max. Each holds
    your last step's LR after the steps it spans itself."""
    path = tmp_path / "train.py"
    path.write_text(YOUR_SCHEDULE.format(schedule=schedule))
    trial = runner(path, tmp_path, settings=PAST_YOURS).run(None)
    assert trial.measurement.ok, trial.log_tail()
    lrs = [float(line) for line in (tmp_path / "lrs.txt").read_text().split()]
    assert len(lrs) > 12, "the trial trains past your own 8 steps"
    assert lrs[7:] == [lrs[7]] * (len(lrs) - 7)  # your last step's, held
    if schedule.startswith("OneCycle"):
        assert lrs[2] == max(lrs) and lrs[7] < 1e-5
    else:
        cosine = [0.05 * (1 + math.cos(math.pi * i / 8)) for i in range(8)]
        assert lrs[:8] == pytest.approx(cosine)
