from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from autoaccel.config import (
    SCHEMA_VERSION,
    Provenance,
    TrainingConfig,
    json_schema,
    load_config,
    reference_markdown,
    save_config,
)
from autoaccel.errors import ConfigError, UsageError
from autoaccel.probe import probe_system

DATA = Path(__file__).parent.parent / "data" / "configs"
ROOT = Path(__file__).parent.parent.parent


def test_golden_v1_loads_forever() -> None:
    config = load_config(DATA / "v1.yaml")
    assert config.schema_version == 1
    assert config.batch_size == 256
    assert config.precision == "bf16-mixed"
    assert config.persistent_workers is True and config.prefetch_factor == 4
    assert config.schedule == "cosine" and config.schedule_steps == 5000
    assert config.provenance.measured["speedup"] == 2.41
    assert config.provenance.evidence["batch_size"] == "32 -> 256: 1.8x samples/s"


def test_round_trip_keeps_every_value(tmp_path: Path) -> None:
    original = load_config(DATA / "v1.yaml")
    path = save_config(original, tmp_path / "autoaccel.yaml")
    assert load_config(path) == original


def test_every_key_carries_a_comment_and_evidence_where_measured(tmp_path: Path) -> None:
    text = load_config(DATA / "v1.yaml").to_yaml()
    for line in text.splitlines():
        if line.startswith("#") or line.startswith("    "):
            continue  # header, and entries of the provenance mappings
        assert "  # " in line, f"no comment on: {line}"
    assert "batch_size: 256  # samples per step in each process | measured: 32 -> 256" in text


def test_to_dict_does_not_mutate() -> None:
    config = load_config(DATA / "v1.yaml")
    data = config.to_dict()
    data["provenance"]["measured"]["speedup"] = 0
    assert config.provenance.measured["speedup"] == 2.41


def test_config_is_frozen() -> None:
    config = TrainingConfig()
    with pytest.raises(AttributeError, match="cannot assign"):
        config.batch_size = 3  # type: ignore[misc]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "autoaccel.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("batch_size: 0\n", r"batch_size: must be >= 1, got 0"),
        ("num_workers: -1\n", r"num_workers: must be >= 0, got -1"),
        ("batch_size: '64'\n", r"batch_size: expected an integer, got str '64'"),
        ("batch_size: true\n", r"batch_size: expected an integer, got True"),
        ("channels_last: 1\n", r"channels_last: expected true/false, got int 1"),
        ("precision: fp8\n", r"precision: expected one of 32-true, tf32, bf16-mixed, 16-mixed"),
        ("bogus: 1\n", r"bogus: unknown key; known keys are schema_version, batch_size"),
        ("provenance:\n  colour: red\n", r"provenance\.colour: unknown key"),
        ("provenance:\n  measured: 3\n", r"provenance\.measured: expected a mapping"),
        (
            "schema_version: 99\n",
            r"schema_version: 99 is newer than this autoaccel understands "
            r"\(1\); upgrade with `pip install -U autoaccel`",
        ),
        ("- 1\n- 2\n", r"the config: expected a mapping of keys to values, got list"),
        ("num_workers: 0\npersistent_workers: true\n", r"persistent_workers: needs num_workers"),
        ("schedule: cosine\n", r"schedule_steps: schedule 'cosine' needs a step count"),
        ("processes: 2\n", r"processes: 2 processes need strategy ddp"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text))


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "batch_size: 0\nnum_workers: -2\nfoo: 1\nprecision: fp4\n")
    with pytest.raises(ConfigError, match=r"autoaccel\.yaml: 4 problems: ") as caught:
        load_config(path)
    assert len(caught.value.problems) == 4
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, UsageError)


def test_missing_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found; create one with"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(
        ConfigError,
        match=r"not valid YAML at line 2 \(mapping values are not allowed here\); fix it",
    ):
        load_config(write(tmp_path, "batch_size: 3\n  bad: [\n"))


def test_precision_this_machine_cannot_run(tmp_path: Path) -> None:
    profile = probe_system()
    unsupported = [p.precision for p in profile.precisions if not p.supported]
    if not unsupported:
        pytest.skip("this machine runs every precision")
    path = write(tmp_path, f"precision: {unsupported[0]}\n")
    with pytest.raises(ConfigError, match=rf"precision: '{unsupported[0]}' cannot run here"):
        load_config(path, profile=profile)
    assert load_config(path).precision == unsupported[0]  # fine on another machine


def test_python_construction_validates_too() -> None:
    with pytest.raises(
        ConfigError,
        match=r"2 problems: batch_size: must be >= 1, got 0; "
        r"lr: must be >= 0.0, got -1",
    ):
        TrainingConfig(batch_size=0, lr=-1)


def test_hardware_mismatch_warns() -> None:
    profile = probe_system()
    same = TrainingConfig(provenance=Provenance(hardware_fingerprint=profile.fingerprint()))
    assert same.hardware_mismatch(profile) is None
    other = TrainingConfig(provenance=Provenance(hardware_fingerprint="0" * 16, hardware="DGX"))
    warning = other.hardware_mismatch(profile)
    assert warning is not None and "measured on other hardware (DGX there, " in warning
    # with the facts recorded, the warning names what differs, not the same words twice
    facts = {**profile.facts(), "usable_cores": 64, "gpus": "NVIDIA H100 (80 GiB)"}
    named = TrainingConfig(provenance=Provenance(hardware_fingerprint="0" * 16, machine=facts))
    warning = named.hardware_mismatch(profile)
    assert warning is not None
    assert f"usable_cores 64 there, {profile.cpu.usable_cores} here" in warning
    assert "gpus NVIDIA H100 (80 GiB) there" in warning
    assert f"cpu {profile.cpu.model}" not in warning  # the same CPU is not named


def test_docs_reference_is_in_step() -> None:
    on_disk = (ROOT / "docs" / "config.md").read_text()
    assert on_disk == reference_markdown(), (
        "docs/config.md is stale: run `python -m autoaccel.reference > docs/config.md`"
    )
    for name in TrainingConfig.__dataclass_fields__:
        if name != "provenance":
            assert f"| `{name}` |" in on_disk
    schema = json.loads((ROOT / "docs" / "autoaccel.schema.json").read_text())
    assert schema == json.loads(json.dumps(json_schema())), (
        "docs/autoaccel.schema.json is stale: run "
        "`python -m autoaccel.reference --schema > docs/autoaccel.schema.json`"
    )


def test_the_json_schema_agrees_with_the_validation() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed")
    schema = json_schema()
    good = load_config(DATA / "v1.yaml").to_dict()
    jsonschema.validate(good, schema)
    for bad in (
        {"batch_size": 0},
        {"batch_size": 2**30},
        {"precision": "fp8"},
        {"bogus": 1},
        {"lr": "fast"},
        {"provenance": {"measured": {"a": [1]}}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**good, **bad}, schema)
        with pytest.raises(ConfigError):
            TrainingConfig.from_dict({**good, **bad})


KILL_MIDWAY = """
import os, sys, time
from pathlib import Path
from autoaccel.config import TrainingConfig, save_config

real_fsync = os.fsync
def stall(fd):
    real_fsync(fd)
    Path(sys.argv[2]).write_text("written, not yet renamed")
    time.sleep(60)
os.fsync = stall
save_config(TrainingConfig(batch_size=999), sys.argv[1])
"""


def test_a_save_killed_midway_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "autoaccel.yaml"
    save_config(TrainingConfig(batch_size=64), target)
    before = target.read_text()
    marker = tmp_path / "midway"
    child = subprocess.Popen([sys.executable, "-c", KILL_MIDWAY, str(target), str(marker)])
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the save never reached its midway point"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert target.read_text() == before
    assert load_config(target).batch_size == 64
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".autoaccel.yaml.")]
    assert leftovers, "the half-done save should be a separate temp file"


def test_schema_version_is_current_and_yaml_is_safe(tmp_path: Path) -> None:
    assert TrainingConfig().schema_version == SCHEMA_VERSION
    path = write(tmp_path, "batch_size: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    assert yaml.safe_load(TrainingConfig().to_yaml())["batch_size"] == 32
