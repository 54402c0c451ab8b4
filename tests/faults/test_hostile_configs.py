"""Hostile and careless config files: each is refused with one line naming the problem,
quickly, without a traceback and without writing anything (issue 16, items 7-13, 17-23)."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from autoaccel.cli import main
from autoaccel.config import TrainingConfig, find_config, load_config, save_config
from autoaccel.errors import ConfigError
from autoaccel.probe import probe_system

#: Aliases under a key the schema knows (the old loader accepted any value there): 8 levels
#: of 9 make 43 million strings in 400 bytes.
BOMB = "provenance:\n  versions:\n" + "".join(
    f"    {name}: &{name} [{', '.join([f'*{prev}'] * 9 if prev else ['x'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefg"], "abcdefgh", strict=True)
)

REFUSED = [
    ("lr: .nan\n", r"lr: must be a finite number, got nan"),
    ("lr: .inf\n", r"lr: must be a finite number"),
    ("momentum: -.inf\n", r"momentum: must be a finite number"),
    (
        "provenance:\n  measured:\n    speedup: .nan\n",
        r"provenance.measured.speedup: must be a finite",
    ),
    ("batch_size: 100000000000000000000\n", r"batch_size: must be <= 1.67772e\+07"),
    ("num_workers: 100000\n", r"num_workers: must be <= 512"),
    ("num_threads: 100000\n", r"num_threads: must be <= 4096"),
    ("strategy: ddp\nprocesses: 100000\n", r"processes: must be <= 1024"),
    ("grad_accum_steps: 1000000000\n", r"grad_accum_steps: must be <= 4096"),
    ("strategy: zero3\nprocesses: 2\n", r"strategy: expected one of none, ddp, fsdp, got 'zero3'"),
    (BOMB, r"aliases \(\*name\) are not allowed"),
    ("batch_size: 32\nbatch_size: 64\n", r"line 2 \(duplicate key 'batch_size'\)"),
    ("", r"the config file is empty"),
    ("# autoaccel training config (schema 1).\n", r"the config file is empty"),
    ("[" * 5000 + "]" * 5000, r"nested too deeply|not valid YAML"),
    ("provenance:\n  measured:\n    a: [1, 2]\n", r"provenance.measured.a: expected a number"),
]


@pytest.mark.parametrize(("text", "match"), REFUSED, ids=[m[:40] for _, m in REFUSED])
def test_a_hostile_config_is_refused_in_one_line(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "autoaccel.yaml"
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=match) as caught:
        load_config(path)
    assert time.monotonic() - started < 2.0
    assert "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["autoaccel.yaml"]


def test_the_alias_bomb_is_refused_by_show_quickly_and_in_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert len(BOMB) < 450
    started = time.monotonic()
    assert main(["show", str(path), "--json"]) == 2
    assert time.monotonic() - started < 5.0
    captured = capsys.readouterr()
    assert len(captured.out) + len(captured.err) < 2000


def test_show_json_is_valid_json_and_refuses_nan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nan.yaml"
    path.write_text("lr: .nan\n")
    assert main(["show", str(path), "--json"]) == 2
    good = save_config(TrainingConfig(lr=0.1), tmp_path / "good.yaml")
    capsys.readouterr()
    assert main(["show", str(good), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["lr"] == 0.1


def test_reads_are_limited_in_size(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 40_000)
    with pytest.raises(ConfigError, match="larger than 256 KiB"):
        load_config(big)
    if Path("/dev/zero").exists():
        with pytest.raises(ConfigError, match="larger than 256 KiB"):
            load_config("/dev/zero")


def test_a_directory_is_named_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="is a directory, not a config file"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match=r"--config names .*, which is a directory"):
        find_config(tmp_path, origin="--config")
    monkeypatch.setenv("AUTOACCEL_CONFIG", str(tmp_path))
    with pytest.raises(ConfigError, match=r"\$AUTOACCEL_CONFIG names .*, which is a directory"):
        find_config()


def test_a_message_quotes_only_an_excerpt_of_the_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "passwd.yaml"
    path.write_text("".join(f"user{i}: x:{i}:{i}:/home/user{i}:/bin/sh\n" for i in range(200)))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.count("known keys are") == 1
    assert "and 195 more" in message
    assert len(message) < 700


def test_an_empty_provenance_record_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("batch_size: 64\nprovenance:\n  versions:\n  measured:\n")
    config = load_config(path)
    assert config.provenance.versions == {} and config.batch_size == 64


def test_the_machine_bounds_threads_processes_and_workers() -> None:
    profile = probe_system()
    cores = profile.cpu.logical_cores
    config = TrainingConfig(num_threads=cores + 1, num_workers=4 * cores + 1)
    problems = config.check_for(profile)
    assert any(p.startswith("num_threads:") for p in problems)
    assert any(p.startswith("num_workers:") for p in problems)
    too_many = len(profile.gpus) or profile.cpu.usable_cores
    wide = TrainingConfig(strategy="ddp", processes=too_many + 1)
    assert any(p.startswith("processes:") for p in wide.check_for(profile))
    assert TrainingConfig(num_threads=cores).check_for(profile) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_config_keeps_its_mode_and_a_new_one_is_readable(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        fresh = save_config(TrainingConfig(), tmp_path / "new.yaml")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        fresh.chmod(0o640)
        save_config(TrainingConfig(batch_size=64), fresh)
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o640
    finally:
        os.umask(old)
