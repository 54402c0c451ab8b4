"""Issue 36, 18: a tuner killed with SIGKILL leaves its trial "running" in an SQLite study;
the next tune fails it, and leaves a live tuner's trial alone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

from autoaccel.search.shared import WORKER_ATTR, fail_orphaned_trials


def test_a_dead_tuners_running_trial_is_failed_a_live_ones_kept(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    host = socket.gethostname()
    orphan, live, elsewhere = study.ask(), study.ask(), study.ask()
    orphan.set_user_attr(WORKER_ATTR, f"{host}:{dead.stdout.strip()}")
    live.set_user_attr(WORKER_ATTR, f"{host}:{os.getpid()}")
    elsewhere.set_user_attr(WORKER_ATTR, "another-host:1")
    assert fail_orphaned_trials(study) == [orphan.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states == {
        orphan.number: TrialState.FAIL,
        live.number: TrialState.RUNNING,
        elsewhere.number: TrialState.RUNNING,
    }
