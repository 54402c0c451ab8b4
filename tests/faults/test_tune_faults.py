"""Faults around ``autoaccel tune``, for real: subprocesses, signals, a full disk, two tunes
at once. Every case checks that nothing is lost (the config is the old one or the new one,
the script is untouched) and that no process is left behind (issue 16, items 1-6, 14, 15).

OOM, divergence (NaN), crashes and hangs inside trials are covered where trials are:
``tests/trials/test_script_trials.py`` and ``tests/search/test_search_study.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from models import TINY_SCRIPT

from autoaccel.cli import main
from autoaccel.config import TrainingConfig, load_config, save_config
from autoaccel.errors import TrialError
from autoaccel.frontends.outputs import save_or_keep
from autoaccel.measure import MeterSettings
from autoaccel.trials.script import ScriptRunner, ended_early

SECRET = "sk-TOPSECRET-4242"

#: The tiny training script; STALL makes it write its pid and hang before prepare().
SCRIPT = (
    """
import os, sys, time

if os.environ.get("STALL"):
    open(os.environ["STALL"], "w").write(str(os.getpid()))
    time.sleep(600)
if "--crash" in sys.argv:
    raise ValueError(f"no data at /data/train (arguments {sys.argv[1:]})")
"""
    + TINY_SCRIPT
)


def write_script(folder: Path) -> Path:
    path = folder / "train.py"
    path.write_text(SCRIPT)
    return path


def tune(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "autoaccel.cli", "tune", *args],
        cwd=folder,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def refused(folder: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """``autoaccel tune ARGS`` in this process, expected to exit 2; its stderr."""
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        code = main(["tune", *args])
    except SystemExit as stop:  # argparse's own usage errors
        code = stop.code
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert not (folder / ".autoaccel" / "trials").exists()  # refused before any trial
    return err


def tune_done(folder: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autoaccel.cli", "tune", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert path.exists(), f"{path} never appeared"


def gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


# --- bad --out, --storage and arguments: refused before any trial -----------------------


def test_out_naming_the_script_is_refused_and_the_script_survives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = write_script(tmp_path)
    err = refused(tmp_path, capsys, str(script), "--out", str(script))
    assert "--out" in err and "is the training script itself" in err
    assert script.read_text() == SCRIPT


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("notes.txt", "exists and is not an autoaccel config"),
        ("a-folder", "is a directory"),
        ("afile/autoaccel.yaml", "is below a file, not a folder"),
        ("/proc/autoaccel.yaml", "cannot write in"),
    ],
)
def test_a_bad_out_is_refused_before_any_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, message: str
) -> None:
    script = write_script(tmp_path)
    (tmp_path / "notes.txt").write_text("my notes\n")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "afile").write_text("a file, not a folder")
    err = refused(tmp_path, capsys, str(script), "--out", target)
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("nosuchdb://host/x", "NoSuchModuleError"),
        ("postgresql://tuner:hunter2@127.0.0.1:1/studies", "postgresql://tuner:***@127.0.0.1"),
        # issue 36, 4: a password with / or a space, or in the query, is masked too
        ("postgresql://tuner:hun/ter2@127.0.0.1:1/studies", "postgresql://tuner:***@127.0.0.1"),
        ("postgresql://tuner:hunter2 x@127.0.0.1:1/studies", "postgresql://tuner:***@127.0.0.1"),
        ("postgresql://tuner@127.0.0.1:1/studies?password=hunter2", "?password=***"),
        (".", "cannot be used"),
        ("/proc/studies.db", "cannot be used"),
    ],
)
def test_a_bad_storage_is_refused_before_any_trial_with_the_password_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], storage: str, message: str
) -> None:
    script = write_script(tmp_path)
    err = refused(tmp_path, capsys, str(script), "--storage", storage)
    assert message in err
    assert "hunter2" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["--budget", "nan"],
        ["--budget", "inf"],
        ["--trial-timeout", "nan"],
        ["--window", "-1"],
        ["--window", "nan"],
        ["--confirm-pairs", "-1"],
        ["--max-trials", "0"],
        ["--budget", "10s"],
    ],
)
def test_bad_numbers_are_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    script = write_script(tmp_path)
    started = time.monotonic()
    refused(tmp_path, capsys, str(script), *args)
    assert time.monotonic() - started < 5


# --- a short budget, secrets in arguments, private logs: one real tune --------------------


@pytest.mark.slow
def test_a_short_budget_searches_ends_in_time_and_keeps_secrets(tmp_path: Path) -> None:
    script = write_script(tmp_path)
    # Short, yet enough for a search on the slower machines of this kind: a 2-core EPYC
    # (avx2 only) trains a step about 2x slower than the Xeon, and 30 s bought it the
    # baseline and one trial; 45 s did too under CI's two workers, beside a torchrun test.
    budget_s = 60
    started = time.monotonic()
    ran = tune_done(
        tmp_path,
        str(script),
        "--budget",
        f"{budget_s}s",
        "--window",
        "0.3",
        "--json",
        "--",
        "--api-key",
        SECRET,
        timeout=240,
    )
    wall_s = time.monotonic() - started
    assert ran.returncode == 0, ran.stderr
    data = json.loads(ran.stdout)
    trials = sorted((tmp_path / ".autoaccel" / "trials").glob("train-*/*/log.txt"))
    # the budget buys a search, not the baseline alone ...
    assert data["search"]["trials_measured"] >= 2, data["search"]
    # ... and the run ends within the budget plus one trial (its longest, as this machine
    # measured it: the last one may run past the budget) and the CLI's start-up
    (summary,) = (tmp_path / ".autoaccel" / "trials").glob("train-*/summary.json")
    longest = max(t["elapsed_s"] for t in json.loads(summary.read_text())["trials"])
    assert wall_s < budget_s + longest + 6, (wall_s, longest, data["search"]["stop_reason"])
    # the secret argument reached the script but no file, output or log
    config = load_config(tmp_path / "autoaccel.yaml")
    assert config.provenance.command is not None and "--api-key '***'" in config.provenance.command
    everything = [ran.stdout, ran.stderr]
    for path in (tmp_path / ".autoaccel").rglob("*"):
        if path.is_file() and not path.name.endswith(".db"):
            everything.append(path.read_text(errors="replace"))
    everything.append((tmp_path / "autoaccel.yaml").read_text())
    assert trials and not any(SECRET in text for text in everything)
    # trial folders and logs are the user's alone; the config is readable by others
    folder = trials[0].parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700  # the run's folder too
    assert stat.S_IMODE(trials[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "autoaccel.yaml").stat().st_mode) & 0o044 == 0o044


# --- signals: the trial dies with tune, the config survives ---------------------------------


@contextlib.contextmanager
def stalled_tune(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A tune whose baseline trial hangs before prepare(); yields it and the trial's pid."""
    script = write_script(tmp_path)
    pid_file = tmp_path / "trial.pid"
    process = tune(
        tmp_path, str(script), "--trial-timeout", "5m", *args, env={"STALL": str(pid_file)}
    )
    try:
        wait_for(pid_file)
        yield process, int(pid_file.read_text())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_tune_and_its_trial(tmp_path: Path, signum: int) -> None:
    saved = save_config(TrainingConfig(batch_size=64), tmp_path / "autoaccel.yaml")
    before = saved.read_text()
    with stalled_tune(tmp_path) as (process, trial_pid):
        if signum == signal.SIGTERM:  # a second tune of the same config is refused meanwhile
            second = tune_done(tmp_path, "train.py", timeout=60)
            assert second.returncode == 2, second.stderr
            assert "another autoaccel tune (pid" in second.stderr
        process.send_signal(signum)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 128 + signum, err
        assert f"stopped by {signal.Signals(signum).name}" in err
        assert gone(trial_pid), "the trial outlived tune"
    assert saved.read_text() == before  # the old config, untouched


def test_a_trial_dies_when_tune_is_killed(tmp_path: Path) -> None:
    with stalled_tune(tmp_path) as (process, trial_pid):
        process.kill()  # SIGKILL: tune cannot clean up; the kernel tells the trial
        process.wait(timeout=10)
        assert gone(trial_pid), "the trial outlived a killed tune"


# --- reporting what happened before prepare() -------------------------------------------


def test_what_happened_before_prepare_is_reported(tmp_path: Path) -> None:
    script = write_script(tmp_path)
    crashed = tune_done(tmp_path, str(script), "--", "--crash", "--api-key", SECRET)
    assert crashed.returncode == 2
    assert SECRET not in crashed.stderr + crashed.stdout  # the script printed it; we do not
    assert "failed before reaching autoaccel.prepare() (exit code 1: ValueError: no data" in (
        crashed.stderr
    )
    assert "log.txt" in crashed.stderr
    settings = MeterSettings(window_s=0.3)
    runner = ScriptRunner(script, (), trials_dir=tmp_path / "t", settings=settings, timeout_s=3)
    os.environ["STALL"] = str(tmp_path / "pid")
    try:
        trial = runner.run(None)
    finally:
        del os.environ["STALL"]
    message = str(ended_early(trial, script))
    assert "stopped by the trial timeout before reaching autoaccel.prepare()" in message
    assert "exit code None" not in message


# --- a full disk ------------------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, filled up; skipped where mounting needs rights this run lacks."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        with contextlib.suppress(OSError), (mount / "filler").open("wb") as filler:
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_found_before_any_trial(tmp_path: Path, full_disk: Path) -> None:
    script = write_script(tmp_path)
    ran = tune_done(tmp_path, str(script), "--out", str(full_disk / "autoaccel.yaml"))
    assert ran.returncode == 2
    assert "No space left on device" in ran.stderr
    assert not (tmp_path / ".autoaccel" / "trials").exists()


def test_a_final_write_that_fails_keeps_the_result(
    full_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = TrainingConfig(batch_size=256, precision="bf16-mixed")
    with pytest.raises(TrialError, match="could not write the tuned config") as caught:
        save_or_keep(config, full_disk / "autoaccel.yaml", stem="train")
    assert "batch_size: 256" in capsys.readouterr().err
    fallback = Path(str(caught.value).split("saved to ")[1].split(" and printed")[0])
    assert load_config(fallback).batch_size == 256
    fallback.unlink()


HOOK_LEAKS = """
import sys
import torch
from torch import nn
import autoaccel

key = sys.argv[sys.argv.index("--api-key") + 1]
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(8192, 16), torch.randint(0, 2, (8192,))

def evaluate():
    raise PermissionError(f"the validation server refused key {key}")

run = autoaccel.prepare(model, opt, (x, y), loader_kwargs={"batch_size": 32}, evaluate=evaluate)
while True:
    for xb, yb in run.loader:
        run.backward(torch.nn.functional.cross_entropy(run.model(xb), yb))
        run.step()
"""


def test_a_secret_the_evaluate_hook_repeats_is_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 36, 7: the hook's error message quotes the script's --api-key: masked."""
    script = tmp_path / "train.py"
    script.write_text(HOOK_LEAKS)
    done = tune_done(tmp_path, str(script), "--budget", "60s", "--", "--api-key", SECRET)
    err = done.stderr
    assert done.returncode == 2, err  # after the baseline trial, which called the hook
    assert "evaluate hook fails on the untrained model" in err
    assert "refused key ***" in err
    assert SECRET not in err


def test_a_script_that_changes_directory_before_prepare_is_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 36, 6: the common os.chdir(os.path.dirname(__file__)) before prepare(); the
    trial's paths are absolute, so its report still reaches the tuner."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = tmp_path / "train.py"
    script.write_text(f"import os\nos.chdir({str(elsewhere)!r})\n" + TINY_SCRIPT)
    monkeypatch.chdir(tmp_path)
    runner = ScriptRunner(
        Path("train.py"),
        (),
        trials_dir=Path(".autoaccel") / "trials",  # relative, as tune gives it
        settings=MeterSettings(window_s=0.3, min_window_steps=3),
        timeout_s=60,
    )
    trial = runner.run(None)
    assert trial.measurement.ok, trial.measurement.message


NEVER_STEPS = """
import torch
from torch import nn
import autoaccel

model = nn.Linear(16, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
run = autoaccel.prepare(model, opt, (torch.randn(256, 16), torch.randint(0, 2, (256,))))
while True:  # forgets run.step(): nothing the meter can count
    for xb, yb in run.loader:
        torch.nn.functional.cross_entropy(run.model(xb), yb).backward()
"""


def test_a_loop_that_never_steps_is_named_early_not_timed_out(tmp_path: Path) -> None:
    """Issue 36, 21: reported as 'no training step' within the trial's own limit, not as
    a timeout after the tuner's whole trial timeout."""
    script = tmp_path / "train.py"
    script.write_text(NEVER_STEPS)
    runner = ScriptRunner(
        script,
        (),
        trials_dir=tmp_path / "trials",
        settings=MeterSettings(max_trial_s=3.0),
        timeout_s=120,
    )
    trial = runner.run(None)
    assert trial.measurement.outcome == "error", trial.measurement  # not "timeout"
    assert "no training step ended in 3 s after prepare()" in trial.measurement.message
    assert "run.step()" in trial.measurement.message


def test_a_dangling_symlink_as_the_study_file_is_refused_before_any_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 36, 17: found by the up-front check, not as an internal error after the
    baseline."""
    script = write_script(tmp_path)
    study = tmp_path / ".autoaccel" / "studies.db"
    study.parent.mkdir()
    study.symlink_to(tmp_path / "gone" / "studies.db")
    err = refused(tmp_path, capsys, str(script), "--storage", str(study))
    assert "cannot be used (FileNotFoundError: a link to a missing file: " in err


def test_what_a_trial_started_in_a_session_of_its_own_is_ended(tmp_path: Path) -> None:
    """Issue 36, 10: a child in its own session outlives the script's process group (and,
    once the script exits, its process tree); the trial's environment marker finds it."""
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "train.py"
    script.write_text(
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],"
        " start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        # what torch's shared memory leaves when a worker dies mid-batch
        "import os\nopen(f'/dev/shm/torch_{os.getpid()}_4242_0', 'w').write('x')\n"
        "open(f'/dev/shm/torch_{child.pid}_4242_1', 'w').write('x')\n"
        f"open({str(tmp_path / 'script.pid')!r}, 'w').write(str(os.getpid()))\n" + TINY_SCRIPT
    )
    runner = ScriptRunner(
        script,
        (),
        trials_dir=tmp_path / "trials",
        settings=MeterSettings(window_s=0.3, min_window_steps=3),
        timeout_s=60,
    )
    assert runner.run(None).measurement.ok
    child = int(pid_file.read_text())
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"
    script_pid = (tmp_path / "script.pid").read_text()
    left = [Path(f"/dev/shm/torch_{script_pid}_4242_0"), Path(f"/dev/shm/torch_{child}_4242_1")]
    assert not [p for p in left if p.exists()]  # the trial's segments, gone


def test_a_full_disk_is_said_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 36, 16: in a trial's output and in the tuner itself, a full disk is named, not
    quoted as 4 KB of a script's output nor reported as an internal error."""
    script = tmp_path / "train.py"
    script.write_text(
        "import sys\nprint('x' * 4000)\n"
        "raise OSError(28, 'No space left on device: /data/cache/shard-7')\n"
    )
    runner = ScriptRunner(
        script, (), trials_dir=tmp_path / "trials", settings=MeterSettings(), timeout_s=60
    )
    message = runner.run(None).measurement.message
    assert "the disk is full (No space left on device)" in message and "xxxx" not in message

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("autoaccel.cli.show.load_config", full)
    (tmp_path / "autoaccel.yaml").write_text("batch_size: 8\n")
    assert main(["show", str(tmp_path / "autoaccel.yaml")]) == 1
    err = capsys.readouterr().err
    assert "the disk is full" in err and "internal error" not in err
