"""Where tune writes (issue 36, 5): the lock of a tune never follows a planted symlink, nor
truncates a file that is not its own."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from autoaccel.errors import UsageError
from autoaccel.frontends.outputs import one_tune_per_config


def _lock_path(out: Path, state: Path) -> Path:
    key = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:16]
    return state / "locks" / f"{key}.lock"


def test_the_lock_holds_and_lives_in_a_private_folder(tmp_path: Path) -> None:
    out, state = tmp_path / "autoaccel.yaml", tmp_path / ".autoaccel"
    with one_tune_per_config(out, state):
        lock = _lock_path(out, state)
        assert f"pid {os.getpid()}" in lock.read_text()
        assert stat.S_IMODE(lock.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(lock.stat().st_mode) & 0o077 == 0


def test_a_symlink_planted_at_the_lock_is_refused_and_its_target_kept(tmp_path: Path) -> None:
    out, state = tmp_path / "autoaccel.yaml", tmp_path / ".autoaccel"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    lock = _lock_path(out, state)
    lock.parent.mkdir(parents=True)
    lock.symlink_to(victim)
    with pytest.raises(UsageError, match="cannot be opened"), one_tune_per_config(out, state):
        pass
    assert victim.read_text() == "precious\n"


def test_something_else_at_the_lock_is_refused(tmp_path: Path) -> None:
    out, state = tmp_path / "autoaccel.yaml", tmp_path / ".autoaccel"
    lock = _lock_path(out, state)
    lock.parent.mkdir(parents=True)
    os.mkfifo(lock)
    refused = pytest.raises(UsageError, match="not a regular file of yours")
    with refused, one_tune_per_config(out, state):
        pass


def test_out_through_a_symlink_updates_the_config_it_points_to(tmp_path: Path) -> None:
    """Issue 36, 15: the link stays a link, and the real config is the one written."""
    from autoaccel.config import TrainingConfig, load_config, save_config
    from autoaccel.frontends.outputs import check_out

    real = save_config(TrainingConfig(batch_size=8), tmp_path / "configs" / "autoaccel.yaml")
    link = tmp_path / "autoaccel.yaml"
    link.symlink_to(real)
    script = tmp_path / "train.py"
    script.write_text("")
    written = check_out(link, script)
    save_config(TrainingConfig(batch_size=64), written)
    assert link.is_symlink() and load_config(link).batch_size == 64
    assert load_config(real).batch_size == 64
