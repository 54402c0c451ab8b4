"""Each export run as its user runs it, with the real library, on tiny models (issue 34):
what the run did (world size, precision, accumulation, threads, the LR at each optimizer
step against ``autoaccel.prepare()``'s), not that a file parses."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import autoaccel
from autoaccel.config import TrainingConfig, save_config
from autoaccel.export import export

#: One process: micro-batch 8, 2 micro-batches a step, bf16, 1 thread, a warm-up and a decay.
TUNED = TrainingConfig(
    device="cpu",
    batch_size=8,
    grad_accum_steps=2,
    num_threads=1,
    precision="bf16-mixed",
    lr=0.2,
    warmup_steps=3,
    schedule="cosine",
    schedule_steps=10,
)
DDP = replace(TUNED, strategy="ddp", processes=2)
STEPS = 8  # optimizer steps each run trains
BIN = str(Path(sys.executable).parent)  # accelerate, torchrun: beside this Python


def prepare_lrs(config: TrainingConfig, steps: int = STEPS) -> list[float]:
    """The LR of each optimizer step in a run that ``autoaccel.prepare()`` sets up."""
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    seen: list[float] = []
    optimizer.register_step_pre_hook(lambda o, *_: seen.append(o.param_groups[0]["lr"]))
    data = (torch.randn(256, 4), torch.randint(0, 2, (256,)))
    one = replace(config, num_threads=None, strategy="none", processes=1)  # the LR plan only
    run = autoaccel.prepare(model, optimizer, data, config=one)
    for x, y in run.loader:
        run.backward(F.cross_entropy(run.model(x).float(), y))
        run.step()
        if len(seen) >= steps:
            break
    return seen[:steps]


def write(config: TrainingConfig, target: str, folder: Path, script: str) -> Path:
    """The export's files in ``folder``, and the training script ``script`` beside them."""
    folder.mkdir(exist_ok=True)
    for name, text in export(config, target, script="train.py").files.items():
        (folder / name).write_text(text)
    (folder / "train.py").write_text(script)
    return folder


def results(done: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # Ranks share the pipe: two lines can arrive run together.
    found = [json.loads(m) for m in re.findall(r"RESULT (\{[^{}]*\})", done.stdout)]
    return sorted(found, key=lambda r: int(str(r["rank"])))


def run(command: list[str], folder: Path, timeout: float = 240) -> list[dict[str, object]]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": "."}
    env.pop("OMP_NUM_THREADS", None)
    return results(
        subprocess.run(
            command, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout
        )
    )


LIGHTNING_SCRIPT = f"""
import json
import lightning
import torch
from trainer import lr_scheduler, trainer

class Tiny(lightning.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
        self.lrs = []

    def training_step(self, batch, index):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.layer(x).float(), y)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.01)
        step = {{"scheduler": lr_scheduler(optimizer), "interval": "step"}}
        return {{"optimizer": optimizer, "lr_scheduler": step}}

    def on_before_optimizer_step(self, optimizer):
        self.lrs.append(optimizer.param_groups[0]["lr"])

n = {16 * STEPS}
data = torch.utils.data.TensorDataset(torch.randn(n, 4), torch.randint(0, 2, (n,)))
trainer.fit_loop.max_epochs = 1
module = Tiny()
trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=8))
print("RESULT " + json.dumps({{"rank": trainer.global_rank, "world": trainer.world_size,
      "precision": trainer.precision, "accumulate": trainer.accumulate_grad_batches,
      "threads": torch.get_num_threads(), "lrs": module.lrs}}), flush=True)
"""


def test_lightning_fit_trains_as_tuned(tmp_path: Path) -> None:
    pytest.importorskip("lightning", reason="Lightning is not installed here")
    folder = write(TUNED, "lightning", tmp_path / "out", LIGHTNING_SCRIPT)
    (done,) = run([sys.executable, "train.py"], folder)
    assert (done["world"], done["precision"], done["accumulate"]) == (1, "bf16-mixed", 2)
    assert done["threads"] == 1
    assert done["lrs"] == pytest.approx(prepare_lrs(TUNED), rel=0.01)


ACCELERATE_SCRIPT = f"""
import json
import time
import torch
from accelerate import Accelerator
from lr_schedule import lr_scheduler

accelerator = Accelerator()
ones = accelerator.reduce(torch.ones(1), reduction="sum").item()  # every rank in one group
model = torch.nn.Linear(4, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
scheduler = lr_scheduler(optimizer)
n = {32 * STEPS}
data = torch.utils.data.TensorDataset(torch.randn(n, 4), torch.randint(0, 2, (n,)))
loader = torch.utils.data.DataLoader(data, batch_size=8)
model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
lrs = []
for x, y in loader:
    with accelerator.accumulate(model):
        accelerator.backward(torch.nn.functional.cross_entropy(model(x).float(), y))
        if accelerator.sync_gradients:
            lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
print("RESULT " + json.dumps({{"rank": accelerator.process_index,
      "world": accelerator.num_processes, "together": ones,
      "precision": str(accelerator.mixed_precision),
      "accumulate": accelerator.gradient_accumulation_steps,
      "threads": torch.get_num_threads(), "lrs": lrs[:{STEPS}]}}), flush=True)
# End the process group while Python still runs, then give gloo's threads the GIL: a
# collective's last drop landing in finalization aborts the process ("terminate called
# without an active exception", pytorch/pytorch#190489; autoaccel.prepare() does the same).
accelerator.end_training()
time.sleep(0.2)
"""


def test_accelerate_launch_trains_as_tuned(tmp_path: Path) -> None:
    """Issue 34: a CPU DDP pick was exported as MULTI_GPU, which ran 2 separate trainings;
    `accelerate launch` pinned 1 thread over the tuned ones; the LR plan was prose."""
    pytest.importorskip("accelerate", reason="Accelerate is not installed here")
    config = replace(DDP, num_threads=2)
    folder = write(config, "accelerate", tmp_path / "out", ACCELERATE_SCRIPT)
    ranks = run(["bash", "accelerate-launch.sh"], folder)
    assert [r["rank"] for r in ranks] == [0, 1]
    expected = prepare_lrs(config)
    for rank in ranks:
        assert (rank["world"], rank["together"]) == (2, 2.0)  # one group of two, not two of one
        assert (rank["precision"], rank["accumulate"], rank["threads"]) == ("bf16", 2, 2)
        assert rank["lrs"] == pytest.approx(expected, rel=0.01)


DEEPSPEED_SCRIPT = f"""
import json
import os
import time
import deepspeed
import deepspeed.ops
import torch

# One process shares no memory with another: skip DeepSpeed's 30 s build of its
# shared-memory collectives, which this run never calls.
deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
from deepspeed_init import initialize

model = torch.nn.Linear(4, 2)
engine, optimizer, _, scheduler = initialize(model, torch.optim.SGD(model.parameters(), lr=0.01))
lrs = []
for micro in range({2 * STEPS}):
    if engine.is_gradient_accumulation_boundary():
        lrs.append(optimizer.param_groups[0]["lr"])
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    out = engine(x.to(torch.bfloat16) if engine.bfloat16_enabled() else x)
    engine.backward(torch.nn.functional.cross_entropy(out.float(), y))
    engine.step()
print("RESULT " + json.dumps({{"rank": 0, "lrs": lrs, "batch": engine.train_batch_size(),
      "micro": engine.train_micro_batch_size_per_gpu(), "bf16": engine.bfloat16_enabled(),
      "accumulate": engine.gradient_accumulation_steps(), "threads": torch.get_num_threads()}}))
torch.distributed.destroy_process_group()  # as in the Accelerate script above
time.sleep(0.2)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_deepspeed_initialize_trains_with_the_tuned_lr(tmp_path: Path) -> None:
    """Issue 34: DeepSpeed's own warm-up (log by default), a decay ending late, a warm-up of
    0 refused, a hard-coded train_batch_size: the export now hands DeepSpeed the schedule
    prepare() uses, and a one-process debug run works."""
    pytest.importorskip("deepspeed", reason="DeepSpeed does not install here")
    config = replace(DDP, warmup_steps=0)  # tuned for 2 processes, debugged in one
    folder = write(config, "deepspeed", tmp_path / "out", DEEPSPEED_SCRIPT)
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0",
           "WORLD_SIZE": "1", "LOCAL_RANK": "0", "DS_ACCELERATOR": "cpu"}  # fmt: skip
    command = ["env", *(f"{k}={v}" for k, v in env.items()), sys.executable, "train.py"]
    (done,) = run(command, folder)
    assert (done["micro"], done["accumulate"], done["batch"]) == (8, 2, 16)
    assert done["bf16"] and done["threads"] == 1
    assert done["lrs"] == pytest.approx(prepare_lrs(config), rel=0.01)


TORCHRUN_SCRIPT = """
import json
import os
print("RESULT " + json.dumps({"rank": int(os.environ["RANK"]),
      "world": int(os.environ["WORLD_SIZE"]), "threads": os.environ.get("OMP_NUM_THREADS"),
      "config": os.environ.get("AUTOACCEL_CONFIG")}), flush=True)
"""


def test_torchrun_sh_runs_on_this_machine_only(tmp_path: Path) -> None:
    """Issue 34: `bash torchrun.sh` ran its multi-node line too (a minute of retries to a
    literal HOST, exit 1); it now runs the one-machine launch and ends."""
    folder = tmp_path / "out"
    folder.mkdir()
    config_path = save_config(DDP, folder / "autoaccel.yaml")
    text = export(DDP, "torchrun", config_path=str(config_path)).files["torchrun.sh"]
    assert text.startswith("#!/usr/bin/env bash\n")
    (folder / "torchrun.sh").write_text(text)
    (folder / "train.py").write_text(TORCHRUN_SCRIPT)
    ranks = run(["bash", "torchrun.sh"], folder, timeout=120)
    assert [(r["rank"], r["world"]) for r in ranks] == [(0, 2), (1, 2)]
    assert {(r["threads"], r["config"]) for r in ranks} == {("1", str(config_path))}


def test_the_script_named_is_the_one_tuned() -> None:
    """Issue 34: `--script` defaulted to train.py though the config named train_cnn.py."""
    from autoaccel.config import Provenance

    tuned = replace(DDP, provenance=Provenance(script="train_cnn.py"))
    assert "train_cnn.py" in export(tuned, "torchrun").files["torchrun.sh"]
    assert "train_cnn.py" in export(tuned, "accelerate").files["accelerate-launch.sh"]
    assert "mine.py" in export(tuned, "torchrun", script="mine.py").files["torchrun.sh"]


def test_the_script_tuned_is_found_beside_its_config(tmp_path: Path) -> None:
    """Tried as a new user: `bash out/torchrun.sh` from the repository named train_cnn.py
    alone, which is in examples/: torchrun could not open it."""
    from autoaccel.config import Provenance

    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "train_cnn.py").write_text("")
    tuned = replace(DDP, provenance=Provenance(script="train_cnn.py"))
    path = str(tmp_path / "examples" / "autoaccel.yaml")
    text = export(tuned, "torchrun", config_path=path).files["torchrun.sh"]
    assert f"{tmp_path}/examples/train_cnn.py" in text


@pytest.mark.parametrize("target", ["lightning", "accelerate"])
def test_fsdp_on_the_cpu_is_refused_where_the_target_needs_gpus(target: str) -> None:
    """Issue 34: FSDP was dropped silently (strategy auto, one process)."""
    from autoaccel.errors import UsageError

    fsdp = replace(DDP, strategy="fsdp")
    with pytest.raises(UsageError, match="export --to torchrun"):
        export(fsdp, target)
    on_gpus = export(replace(fsdp, device="cuda"), target)
    assert "fsdp" in on_gpus.text().lower() and "strategy" in on_gpus.expressed
    deepspeed = json.loads(export(fsdp, "deepspeed").files["ds_config.json"])
    assert deepspeed["zero_optimization"]["stage"] == 3
