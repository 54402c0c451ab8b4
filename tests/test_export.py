"""Exports, checked by the tools that read them: Lightning's Trainer takes the arguments,
Accelerate loads its YAML, DeepSpeed's config class parses the JSON, torchrun's parser reads
the command line. A library that does not install here skips its check, saying so."""

from __future__ import annotations

import ast
import json
import os
import shlex
from pathlib import Path

import pytest
import yaml

from autoaccel.cli import main
from autoaccel.config import TrainingConfig, save_config
from autoaccel.export import TARGETS, export

TUNED = TrainingConfig(
    device="cpu",
    batch_size=256,
    grad_accum_steps=2,
    num_workers=2,
    persistent_workers=True,
    pin_memory=True,
    num_threads=4,
    precision="bf16-mixed",
    channels_last=True,
    strategy="ddp",
    processes=2,
    lr=0.4,
    warmup_steps=50,
    schedule="cosine",
    schedule_steps=1000,
)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_knob_is_expressed_or_listed(target: str) -> None:
    out = export(TUNED, target, script="train.py", config_path="/runs/autoaccel.yaml")
    defaults = TrainingConfig().knobs()
    delegated = "the other knobs" in out.not_expressed  # read from $AUTOACCEL_CONFIG
    for knob, value in TUNED.knobs().items():
        if value == defaults[knob]:
            continue  # at its default: nothing to carry
        carried = knob in out.expressed or knob in out.not_expressed or delegated
        assert carried, f"{target} drops {knob}={value!r}:\n{out.text()}"
    assert not set(out.expressed) & set(out.not_expressed)


def lightning_arguments() -> dict[str, object]:
    source = export(TUNED, "lightning").files["trainer.py"]
    (call,) = (
        node.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "trainer"
    )
    assert isinstance(call, ast.Call)
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def test_lightning_trainer_accepts_the_arguments() -> None:
    lightning = pytest.importorskip("lightning", reason="Lightning is not installed here")
    arguments = lightning_arguments()
    assert arguments["precision"] == "bf16-mixed" and arguments["accumulate_grad_batches"] == 2
    cpu = {**arguments, "strategy": "ddp_spawn" if arguments["strategy"] == "ddp" else "auto"}
    assert arguments["accelerator"] == "cpu"  # where it was tuned
    trainer = lightning.Trainer(logger=False, enable_checkpointing=False, **cpu)
    assert trainer.accumulate_grad_batches == 2
    assert trainer.num_devices == 2
    fragment = yaml.safe_load(export(TUNED, "lightning").files["lightning-cli.yaml"])
    assert fragment["trainer"] == arguments


def test_the_device_reaches_every_target() -> None:
    gpu1 = TrainingConfig(device="cuda:1", cudnn_benchmark=True, optimizer_impl="fused")
    trainer = yaml.safe_load(export(gpu1, "lightning").files["lightning-cli.yaml"])["trainer"]
    assert (trainer["accelerator"], trainer["devices"]) == ("gpu", [1])
    accelerate = yaml.safe_load(export(gpu1, "accelerate").files["accelerate-config.yaml"])
    assert (accelerate["gpu_ids"], accelerate["use_cpu"]) == ("1", False)
    cpu = yaml.safe_load(
        export(TrainingConfig(device="cpu"), "accelerate").files["accelerate-config.yaml"]
    )
    assert cpu["use_cpu"] is True
    assert "DS_ACCELERATOR=cpu" in export(TrainingConfig(device="cpu"), "deepspeed").text()
    lightning = export(gpu1, "lightning").not_expressed
    assert lightning["cudnn_benchmark"] == "torch.backends.cudnn.benchmark = True before training"
    assert "fused=True" in lightning["optimizer_impl"]


def test_accelerate_loads_its_yaml(tmp_path: Path) -> None:
    pytest.importorskip("accelerate", reason="Accelerate is not installed here")
    from accelerate.commands.config.config_args import load_config_from_file

    path = tmp_path / "accelerate.yaml"
    path.write_text(export(TUNED, "accelerate").files["accelerate-config.yaml"])
    loaded = load_config_from_file(str(path))
    assert str(loaded.mixed_precision) in ("bf16", "PrecisionType.BF16")
    assert loaded.num_processes == 2
    assert "MULTI_GPU" in str(loaded.distributed_type)


def test_deepspeed_parses_its_json() -> None:
    pytest.importorskip("deepspeed", reason="DeepSpeed does not install here")
    from deepspeed.runtime.config import DeepSpeedConfig

    settings = json.loads(export(TUNED, "deepspeed").files["ds_config.json"])
    parsed = DeepSpeedConfig(settings)  # one process here: no train_batch_size to clash
    assert parsed.train_micro_batch_size_per_gpu == 256
    assert parsed.gradient_accumulation_steps == 2 and parsed.train_batch_size == 512
    assert parsed.bfloat16_config.enabled and parsed.zero_optimization_stage == 0
    assert parsed.scheduler_name is None  # the schedule is deepspeed_init.py's, prepare()'s own


def test_the_deepspeed_files_hold_the_plan() -> None:
    out = export(TUNED, "deepspeed")
    settings = json.loads(out.files["ds_config.json"])
    assert settings["train_micro_batch_size_per_gpu"] == 256
    assert "train_batch_size" not in settings  # DeepSpeed derives it from the world size
    assert settings["bf16"] == {"enabled": True} and settings["fp16"] == {"enabled": False}
    code = out.files["deepspeed_init.py"]
    assert "schedule_steps=1000" in code and "warmup_steps=50" in code and "0.4" in code
    assert "torch.set_num_threads(4)" in code
    assert {"schedule", "warmup_steps", "lr", "num_threads"} <= set(out.expressed)


def test_torchrun_parses_the_command_line() -> None:
    from torch.distributed.run import get_args_parser

    text = export(TUNED, "torchrun", script="my train.py").files["torchrun.sh"]
    lines = [line for line in text.splitlines() if "torchrun " in line]
    assert len(lines) == 2 and lines[1].startswith("# ")  # several machines: commented
    for line in (lines[0], lines[1].removeprefix("# ")):
        words = shlex.split(line)
        assert words[0] == "AUTOACCEL_CONFIG=autoaccel.yaml" and words[1] == "OMP_NUM_THREADS=4"
        start = words.index("torchrun") + 1
        args = get_args_parser().parse_args(words[start:])
        assert args.nproc_per_node == "2" and args.training_script == "my train.py"


def test_env_is_a_shell_script(tmp_path: Path) -> None:
    import subprocess

    text = export(TUNED, "env", config_path="/runs/my config.yaml").files["autoaccel.env"]
    shown = subprocess.run(
        ["bash", "-c", f'{text}\necho "$AUTOACCEL_CONFIG|$OMP_NUM_THREADS"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown.strip() == "/runs/my config.yaml|4"


def test_the_export_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = save_config(TUNED, tmp_path / "autoaccel.yaml")
    assert main(["export", str(path), "--to", "deepspeed", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert json.loads(data["files"]["ds_config.json"])["gradient_accumulation_steps"] == 2
    assert "channels_last" in data["not_expressed"]
    written = tmp_path / "out"
    assert main(["export", str(path), "--to", "lightning", "--dir", str(written)]) == 0
    assert sorted(p.name for p in written.iterdir()) == [
        ".autoaccel-export.json",  # what export wrote there, so that it may replace it
        "lightning-cli.yaml",
        "trainer.py",
    ]
    assert "not expressible in lightning" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["export", str(path), "--to", "keras", "--json"]) == 2
    error = json.loads(capsys.readouterr().out)
    assert error["exit_code"] == 2 and "invalid choice: 'keras'" in error["error"]


def test_export_dir_replaces_only_what_export_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 36, 3 and 12: the user's own trainer.py (or one edited since), a FIFO, or a
    --dir below a file: one line, exit 2, nothing written; export's own files: replaced."""
    path = save_config(TUNED, tmp_path / "autoaccel.yaml")
    folder = tmp_path / "runs"
    folder.mkdir()
    mine = folder / "trainer.py"
    mine.write_text("# my own trainer\n")
    argv = ["export", str(path), "--to", "lightning", "--dir", str(folder)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "trainer.py already there and not written by autoaccel export" in err
    assert mine.read_text() == "# my own trainer\n"
    assert not (folder / "lightning-cli.yaml").exists()  # nothing half-written
    mine.unlink()
    assert main(argv) == 0
    assert main(argv) == 0  # its own files, unchanged since: replaced
    mine.write_text(mine.read_text() + "# edited\n")
    assert main(argv) == 2  # edited since: the user's now
    assert mine.read_text().endswith("# edited\n")
    capsys.readouterr()
    fifo = tmp_path / "fifo-dir"
    fifo.mkdir()
    os.mkfifo(fifo / "ds_config.json")
    assert main(["export", str(path), "--to", "deepspeed", "--dir", str(fifo)]) == 2
    assert main(["export", str(path), "--to", "env", "--dir", str(path / "below")]) == 2
    assert "is, or is below, a file" in capsys.readouterr().err


def test_export_warns_of_other_hardware_and_what_cannot_run_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 36, 19: as `show` does, and torchrun.sh no longer calls it "this machine"."""
    from autoaccel.config import Provenance

    elsewhere = Provenance(hardware_fingerprint="0123456789abcdef", hardware="8x H100")
    config = TrainingConfig(strategy="ddp", processes=512, provenance=elsewhere)
    path = save_config(config, tmp_path / "autoaccel.yaml")
    assert main(["export", str(path), "--to", "torchrun", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert any("measured on other hardware" in w for w in data["warnings"])
    assert any("processes: 512 processes" in w for w in data["warnings"])
    assert "this machine" not in data["files"]["torchrun.sh"]
