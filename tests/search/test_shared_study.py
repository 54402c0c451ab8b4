"""Two ``autoaccel tune`` workers share one study on a real PostgreSQL server (issue 14,
item 5): no config measured twice, the study completes, a worker killed mid-trial leaves
a failed trial and the other goes on, the config is written once, and the storage
password never shows. Each worker runs in a folder of its own, as on another machine.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from models import TINY_SCRIPT
from pg_server import PASSWORD, Server

from autoaccel.search.shared import DUPLICATE_ATTR, FINGERPRINT_ATTR, WORKER_ATTR


def worker(folder: Path, url: str, study: str, *args: str) -> subprocess.Popen[str]:
    """One tuning worker in ``folder`` (its own copy of the script, its own output)."""
    folder.mkdir()
    (folder / "train.py").write_text(TINY_SCRIPT)
    command = [sys.executable, "-m", "autoaccel.cli", "tune", "train.py", "--storage", url]
    return subprocess.Popen(
        [*command, "--study", study, "--window", "0.3", "--confirm-pairs", "1", *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@contextlib.contextmanager
def two_workers(
    tmp_path: Path, url: str, study: str, trials: int, b_prints: str = "--json"
) -> Iterator[tuple[subprocess.Popen[str], subprocess.Popen[str]]]:
    """Workers ``a`` and ``b`` on one study, each in a folder of its own; ``a`` answers in
    JSON, ``b`` as ``b_prints`` says ("--json", or "" for the tables people read). Both are
    killed (with their trials) on the way out, whatever happened."""
    args = ("--max-trials", str(trials), "--budget", "2m")
    a = worker(tmp_path / "a", url, study, "--json", *args)
    started = (a, worker(tmp_path / "b", url, study, *filter(None, [b_prints]), *args))
    try:
        yield started
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


#: The end phase measures the finalists again on purpose; the study records those too.
AGAIN = ("final round", "confirmation")


def measured_keys(study: optuna.Study) -> list[str]:
    """The config of every trial the search measured (step-backs are not measured)."""
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    return [
        json.dumps(t.params, sort_keys=True)
        for t in trials
        if "measurement" in t.user_attrs
        and DUPLICATE_ATTR not in t.user_attrs
        and t.user_attrs.get("source") not in AGAIN
    ]


pytestmark = pytest.mark.slow  # two tunes of a minute or more each; CI runs them


def test_two_workers_share_a_study_and_one_writes_the_config(
    tmp_path: Path, postgres: Server
) -> None:
    url = postgres.url()
    with two_workers(tmp_path, url, "shared", trials=3) as (a, b):
        out_a, err_a = a.communicate(timeout=240)
        out_b, err_b = b.communicate(timeout=240)
    assert a.returncode == 0 and b.returncode == 0, err_a + err_b
    study = optuna.load_study(study_name="shared", storage=url)
    keys = measured_keys(study)
    assert len(keys) == len(set(keys)), "a config was measured twice"
    searched = [t for t in study.trials if t.user_attrs.get("source") not in AGAIN]
    by_worker = {t.user_attrs.get(WORKER_ATTR) for t in searched if "measurement" in t.user_attrs}
    assert by_worker == {f"{os.uname().nodename}:{a.pid}", f"{os.uname().nodename}:{b.pid}"}
    assert all(t.user_attrs.get(FINGERPRINT_ATTR) for t in study.trials if t.params)
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))  # it completed
    # one worker wrote the config; the other says who did
    written = [(tmp_path / w / "autoaccel.yaml").exists() for w in "ab"]
    assert sorted(written) == [False, True]
    follower = json.loads(out_b if written[0] else out_a)
    assert follower["config_path"] is None and follower["written_by"]
    leader = json.loads(out_a if written[0] else out_b)
    assert leader["search"]["shared"] and len(leader["search"]["by_worker"]) == 2
    everything = [out_a, err_a, out_b, err_b]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            everything.append(path.read_text(errors="replace"))
    assert not any(PASSWORD in text for text in everything), "the password showed"
    # the study itself: no attribute of it or of a trial holds the password
    attrs = [study.user_attrs, *(t.user_attrs for t in study.trials)]
    assert not any(PASSWORD in json.dumps(a, default=str) for a in attrs)


def test_a_worker_killed_mid_trial_leaves_a_failed_trial_and_the_other_goes_on(
    tmp_path: Path, postgres: Server
) -> None:
    """Also issue 36: the survivor prints the tables people read, and neither they nor any
    file it left show the storage password."""
    url = postgres.url()
    with two_workers(tmp_path, url, "killed", trials=4, b_prints="") as (a, b):
        a_id = f"{os.uname().nodename}:{a.pid}"
        killed = None
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline:
            time.sleep(0.3)
            with contextlib.suppress(KeyError):  # the study may not exist yet
                study = optuna.load_study(study_name="killed", storage=url)
                running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
                # A trial that started under two seconds ago is mid-measurement for sure (its
                # script is still importing torch), so the kill cannot race its end; but
                # not the worker's first, its baseline, measured before it is recorded and
                # RUNNING for a moment only (once killed just as it completed: COMPLETE).
                own = [t.number for t in study.trials if t.user_attrs.get(WORKER_ATTR) == a_id]
                mine = [
                    t
                    for t in running
                    if t.user_attrs.get(WORKER_ATTR) == a_id
                    and t.number != min(own)
                    and t.datetime_start is not None
                    and (datetime.datetime.now() - t.datetime_start).total_seconds() < 2.0
                ]
                if mine:
                    os.killpg(a.pid, signal.SIGKILL)  # the worker and its trial
                    killed = mine[0].number
        assert killed is not None, "worker a never measured a trial"
        out_b, err_b = b.communicate(timeout=240)
    assert b.returncode == 0, err_b
    study = optuna.load_study(study_name="killed", storage=url)
    assert study.trials[killed].state is optuna.trial.TrialState.FAIL  # by heartbeat, not lost
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    keys = measured_keys(study)
    assert len(keys) == len(set(keys))
    assert (tmp_path / "b" / "autoaccel.yaml").exists()  # the survivor wrote the config
    assert "Where things are" in out_b and "***@" in out_b
    assert "optuna-dashboard" in out_b  # the command, wrapped as the table's width allows
    texts = [out_b, err_b]
    texts += [p.read_text(errors="replace") for p in (tmp_path / "b").rglob("*") if p.is_file()]
    assert not any(PASSWORD in text for text in texts), "the password showed"
