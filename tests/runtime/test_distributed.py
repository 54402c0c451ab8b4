"""``prepare()`` under torchrun, for real (gloo on this CPU; issue 14, item 3): it joins the
process group from torchrun's environment, wraps the model (DDP, or FSDP2's
``fully_shard``), shards the data, and training over two processes lands where one
process lands with the same global batch (the same samples in each optimizer step: with
``shuffle=False``, ``DistributedSampler`` gives rank r every other sample from r).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = """
import os, sys
import torch
from torch import nn
import autoaccel

strategy, accumulation, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
world = int(os.environ.get("WORLD_SIZE", "1"))
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
data = torch.Generator().manual_seed(1)
x, y = torch.randn(256, 8, generator=data), torch.randint(0, 2, (256,), generator=data)
per_process = 32 // world // accumulation  # global batch 32, whatever the split
config = autoaccel.TrainingConfig(
    batch_size=per_process, grad_accum_steps=accumulation, strategy=strategy,
    processes=world, num_threads=1,
)
loader = {"batch_size": per_process, "shuffle": False}
run = autoaccel.prepare(model, optimizer, (x, y), loader_kwargs=loader, config=config)
seen = 0
for xb, yb in run.loader:
    run.backward(nn.functional.cross_entropy(run.model(xb), yb))
    run.step()
    seen += len(xb)
whole = [p.full_tensor() if hasattr(p, "full_tensor") else p.detach() for p in model.parameters()]
local = [p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in model.parameters()]
if int(os.environ.get("RANK", "0")) == 0:
    torch.save({"params": whole, "local": local, "seen": seen, "steps": run.optimizer_steps,
                "wrapper": type(run.model).__name__}, out)
"""


def train(folder: Path, strategy: str, accumulation: int, processes: int) -> dict[str, object]:
    script = folder / "train.py"
    script.write_text(SCRIPT)
    out = folder / f"{strategy}-{accumulation}-{processes}.pt"
    launcher = (
        ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        if processes > 1
        else []
    )
    ran = subprocess.run(
        [sys.executable, *launcher, str(script), strategy, str(accumulation), str(out)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    return torch.load(out)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The same training in one process, batch 32."""
    return train(tmp_path_factory.mktemp("alone"), "none", 1, 1)


@pytest.mark.parametrize(
    ("strategy", "accumulation", "wrapper"),
    [
        ("ddp", 1, "DistributedDataParallel"),
        ("fsdp", 1, "FSDPSequential"),  # fully_shard makes the module's class an FSDP one
        ("fsdp", 2, "FSDPSequential"),  # micro-batches: gradients sync on the last only
    ],
)
def test_two_processes_train_as_one_with_the_same_global_batch(
    tmp_path: Path, alone: dict[str, object], strategy: str, accumulation: int, wrapper: str
) -> None:
    two = train(tmp_path, strategy, accumulation, 2)
    assert two["wrapper"] == wrapper
    assert two["seen"] == 128 and alone["seen"] == 256  # each rank trains on its half
    assert two["steps"] == alone["steps"] == 8
    for mine, theirs in zip(two["params"], alone["params"], strict=True):  # type: ignore[call-overload]
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-4)
    if strategy == "fsdp":  # each rank holds half of every parameter (dim 0), not a copy
        whole = [p.numel() for p in alone["params"]]  # type: ignore[attr-defined]
        assert all(local < n for local, n in zip(two["local"], whole, strict=True))  # type: ignore[call-overload]
