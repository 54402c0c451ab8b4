"""``autoaccel.launchers`` and ``tune --launch-config``: your Accelerate or DeepSpeed
launch read as knobs, so the baseline is your setup as you launch it. What ``autoaccel
export`` writes reads back as the config it came from; a setting autoaccel cannot measure
as yours is one line, exit 2, before any trial."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from faults.test_tune_faults import refused, write_script
from trials.test_script_trials import SHORT

from autoaccel.config import TrainingConfig, load_config
from autoaccel.errors import UsageError
from autoaccel.export import export
from autoaccel.frontends.script import tune_script
from autoaccel.launchers import deepspeed_pins, read_launch
from autoaccel.pipeline import TUNE, PipelineOptions

CONFIGS = [
    TrainingConfig(
        batch_size=64, precision="bf16-mixed", processes=2, strategy="ddp", device="cpu"
    ),
    TrainingConfig(
        batch_size=16, grad_accum_steps=4, precision="32-true", compile=True, device="cpu"
    ),
    TrainingConfig(batch_size=8, precision="16-mixed", processes=4, strategy="fsdp", device="cuda"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=["ddp-bf16", "accumulation-compiled", "fsdp"])
def test_what_export_writes_reads_back_as_the_config(
    tmp_path: Path, config: TrainingConfig
) -> None:
    """``export --to accelerate`` and ``--to deepspeed`` go out; ``--launch-config`` brings
    them back: each file's knobs are the config's (exports went one way only)."""
    read = {}
    for target, name in (("accelerate", "accelerate-config.yaml"), ("deepspeed", "ds_config.json")):
        if target == "accelerate" and config.strategy == "fsdp" and config.device == "cpu":
            continue
        (tmp_path / name).write_text(export(config, target).files[name])
        read[target] = read_launch(tmp_path / name)
    accelerate = read["accelerate"].knobs
    for knob in ("processes", "strategy", "precision"):
        assert accelerate[knob] == getattr(config, knob), knob
    assert accelerate.get("compile", False) == config.compile
    assert accelerate.get("device") == ("cpu" if config.device == "cpu" else None)
    deepspeed = read["deepspeed"].knobs  # its processes come from the launcher
    for knob in ("batch_size", "grad_accum_steps", "precision"):
        assert deepspeed[knob] == getattr(config, knob), knob
    assert deepspeed.get("strategy", "none") == ("fsdp" if config.strategy == "fsdp" else "none")
    rebuilt = read["accelerate"].applied_to(TrainingConfig(batch_size=config.batch_size))
    assert (rebuilt.processes, rebuilt.strategy) == (config.processes, config.strategy)


def test_a_deepspeed_config_gives_its_batch_and_the_processes_its_global_batch_makes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ds_config.json"
    settings = {
        "train_batch_size": 96,
        "train_micro_batch_size_per_gpu": 12,
        "gradient_accumulation_steps": 4,
        "bf16": {"enabled": True},
        "zero_optimization": {"stage": 0},
    }
    path.write_text(json.dumps(settings))
    launch = read_launch(path)
    assert launch.tool == "DeepSpeed"
    assert launch.knobs == {
        "batch_size": 12,
        "grad_accum_steps": 4,
        "processes": 2,
        "precision": "bf16-mixed",
        "strategy": "ddp",
    }
    assert launch.words() == "2 processes, batch 12 per process, accumulation 4, bf16-mixed"


def test_auto_values_stay_yours(tmp_path: Path) -> None:
    """Hugging Face's DeepSpeed configs say "auto" where the Trainer fills in its own."""
    path = tmp_path / "ds_config.json"
    auto = {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto"}
    path.write_text(json.dumps({**auto, "train_batch_size": "auto", "bf16": {"enabled": "auto"}}))
    launch = read_launch(path)
    assert launch.knobs == {}
    yours = TrainingConfig(batch_size=24, grad_accum_steps=2, precision="16-mixed")
    assert launch.applied_to(yours).knobs() == yours.knobs()


def test_a_launch_that_names_no_processes_keeps_your_strategy(tmp_path: Path) -> None:
    (tmp_path / "ds.json").write_text(json.dumps({"train_micro_batch_size_per_gpu": 8}))
    yours = TrainingConfig(batch_size=16, processes=2, strategy="fsdp", device="cpu")
    launched = read_launch(tmp_path / "ds.json").applied_to(yours)
    assert (launched.batch_size, launched.processes, launched.strategy) == (8, 2, "fsdp")


def test_an_accelerate_deepspeed_config_reads_the_file_it_names(tmp_path: Path) -> None:
    (tmp_path / "ds.json").write_text(json.dumps({"train_micro_batch_size_per_gpu": 6}))
    settings = {
        "distributed_type": "DEEPSPEED",
        "num_processes": 2,
        "mixed_precision": "bf16",
        "deepspeed_config": {"deepspeed_config_file": "ds.json"},  # beside it
    }
    (tmp_path / "accelerate.yaml").write_text(yaml.safe_dump(settings))
    knobs = read_launch(tmp_path / "accelerate.yaml").knobs
    assert knobs["batch_size"] == 6 and knobs["processes"] == 2 and knobs["strategy"] == "ddp"
    assert knobs["precision"] == "bf16-mixed"


def test_an_unquoted_no_is_accelerates_no(tmp_path: Path) -> None:
    """YAML reads ``distributed_type: NO`` and ``mixed_precision: no`` as false."""
    (tmp_path / "a.yaml").write_text("distributed_type: NO\nmixed_precision: no\n")
    knobs = read_launch(tmp_path / "a.yaml").knobs
    assert (knobs["processes"], knobs["strategy"], knobs["precision"]) == (1, "none", "32-true")


@pytest.mark.parametrize(
    ("omp", "cpu", "threads"),
    [
        ("3", True, 3),
        (None, True, max((psutil.cpu_count(logical=False) or 1) // 2, 1)),
        (None, False, 1),
    ],
)
def test_the_threads_are_what_accelerate_launch_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, omp: str | None, cpu: bool, threads: int
) -> None:
    """No config file holds --num_cpu_threads_per_process: without it, accelerate launch
    gives OMP_NUM_THREADS, else on the CPU the physical cores shared among the processes."""
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    settings = {"distributed_type": "MULTI_CPU", "num_processes": 2, "use_cpu": cpu}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(settings))
    assert read_launch(tmp_path / "a.yaml").knobs["num_threads"] == threads


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("a.yaml", "num_machines: 2\nnum_processes: 4\n", "launches on 2 machines"),
        ("a.yaml", "mixed_precision: fp8\n", "mixed_precision 'fp8' is not one autoaccel tunes"),
        ("a.yaml", "distributed_type: XLA\n", "distributed_type XLA is not one autoaccel trains"),
        (
            "a.yaml",
            "distributed_type: NO\ndynamo_config:\n  dynamo_backend: EAGER\n",
            "dynamo_backend EAGER is not one autoaccel measures",
        ),
        ("a.yaml", "distributed_type: MULTI_CPU\nnum_processes: 0\n", "num_processes must be"),
        ("ds.json", '{"zero_optimization": {"stage": 2}}', "ZeRO stage 2 has no counterpart"),
        (
            "ds.json",
            '{"train_batch_size": 10, "train_micro_batch_size_per_gpu": 4}',
            "train_batch_size 10 is not a whole number of processes' 4",
        ),
        ("x.yaml", "epochs: 3\n", "is neither an Accelerate config"),
        ("x.yaml", "- 1\n", "holds no settings"),
        ("x.yaml", "a: [\n", "is not YAML or JSON (line 2)"),
        (None, "", "cannot read the launch config"),
    ],
)
def test_bad_launch_configs_are_one_line(
    tmp_path: Path, name: str | None, text: str, words: str
) -> None:
    path = tmp_path / (name or "missing.yaml")
    if name is not None:
        path.write_text(text)
    with pytest.raises(UsageError) as raised:
        read_launch(path)
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_tune_refuses_a_bad_launch_config_before_any_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = write_script(tmp_path)
    (tmp_path / "ds.json").write_text('{"zero_optimization": {"stage": 1}}')
    err = refused(tmp_path, capsys, str(script), "--launch-config", "ds.json")
    assert "ZeRO stage 1 has no counterpart" in err


@pytest.mark.slow
def test_the_baseline_is_your_script_as_your_launch_runs_it(tmp_path: Path) -> None:
    """Your script trains 1 process at 32-true; your Accelerate launch, 2 processes at
    bf16: that is the baseline every pick is measured against, and what a kept setup
    writes."""
    script = write_script(tmp_path)
    settings: dict[str, Any] = {
        "distributed_type": "MULTI_CPU",
        "num_processes": 2,
        "mixed_precision": "bf16",
        "use_cpu": True,
    }
    (tmp_path / "accelerate.yaml").write_text(yaml.safe_dump(settings))
    launch = read_launch(tmp_path / "accelerate.yaml")
    options = PipelineOptions.checked(
        TUNE, budget_s=40, max_trials=2, settings=SHORT, confirm_pairs=1, seed=0
    )
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        result = tune_script(script, (), options, launch=launch)
    finally:
        os.chdir(cwd)
    specs = [
        json.loads(p.read_text())
        for p in sorted((tmp_path / result.trials_dir).glob("*/spec.json"))
    ]
    own, yours = specs[0], specs[1]  # the script's own settings, then your launch's
    assert own["baseline"] and not yours["baseline"]
    launched = yours["config"]
    assert (launched["processes"], launched["strategy"], launched["precision"]) == (
        2,
        "ddp",
        "bf16-mixed",
    )
    assert launched["batch_size"] == 32 and launched["device"] == "cpu"  # the script's own
    baseline = result.advice.search.baseline
    assert baseline.config.knobs() == TrainingConfig.from_dict(launched).knobs()
    assert baseline.value == pytest.approx(result.advice.baseline.samples_per_s)
    config = load_config(result.config_path)
    assert "--launch-config" in (config.provenance.command or "")


def test_what_a_deepspeed_config_given_to_hf_sets_is_yours() -> None:
    """HF refuses TrainingArguments that differ from a DeepSpeed config's own values, and
    DeepSpeed's optimizer and scheduler sections set the LR and its schedule: those knobs
    are the script's. "auto" (HF fills it in) leaves a knob to autoaccel."""
    assert (
        deepspeed_pins({"train_micro_batch_size_per_gpu": "auto", "bf16": {"enabled": "auto"}})
        == {}
    )
    pins = deepspeed_pins(
        {
            "train_batch_size": 64,
            "gradient_accumulation_steps": 2,
            "fp16": {"enabled": False},
            "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": [0.8, 0.99]}},
            "scheduler": {"type": "WarmupLR", "params": {"warmup_max_lr": 0.01}},
            "zero_optimization": {"stage": 2},  # HF's to run: no knob of autoaccel's
        }
    )
    assert pins == {
        "batch_size": "train_batch_size 64",
        "grad_accum_steps": "gradient_accumulation_steps 2, train_batch_size 64",
        "processes": "train_batch_size 64",
        "precision": "fp16.enabled False",
        "momentum": "optimizer.params.betas [0.8, 0.99]",
        "schedule": "scheduler WarmupLR",
        "warmup_steps": "scheduler WarmupLR",
        "lr": "scheduler.params.warmup_max_lr 0.01",
    }
