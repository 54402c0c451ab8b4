"""``prepare()`` under torchrun, for real (gloo on this CPU; issue 14, item 3): it joins the
process group from torchrun's environment, wraps the model (DDP, or FSDP2's
``fully_shard``), shards the data, and training over two processes lands where one
process lands with the same global batch: the same samples in each optimizer step, as
``GlobalOrderSampler`` gives rank r every other sample from r of the order one process
draws, over two epochs, shuffled or not, and the script never calls ``set_epoch()``.
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

strategy, accumulation, out = sys.argv[1], int(sys.argv[2]), sys.argv[4]
shuffle = sys.argv[3] == "1"
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
loader = {"batch_size": per_process, "shuffle": shuffle}
run = autoaccel.prepare(model, optimizer, (x, y), loader_kwargs=loader, config=config)
seen = 0
for epoch in range(2):  # a new order each epoch, with no set_epoch() as one process needs none
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


def train(
    folder: Path, strategy: str, accumulation: int, processes: int, *, shuffle: bool = False
) -> dict[str, object]:
    script = folder / "train.py"
    script.write_text(SCRIPT)
    out = folder / f"{strategy}-{accumulation}-{processes}-{int(shuffle)}.pt"
    launcher = (
        ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        if processes > 1
        else []
    )
    arguments = [strategy, str(accumulation), str(int(shuffle)), str(out)]
    ran = subprocess.run(
        [sys.executable, *launcher, str(script), *arguments],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    return torch.load(out)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, dict[str, object]]:
    """The same training in one process, batch 32, in order and shuffled."""
    folder = tmp_path_factory.mktemp("alone")
    return {shuffle: train(folder, "none", 1, 1, shuffle=shuffle) for shuffle in (False, True)}


@pytest.mark.parametrize(
    ("strategy", "accumulation", "shuffle", "wrapper"),
    [
        ("ddp", 1, False, "DistributedDataParallel"),
        ("ddp", 2, True, "DistributedDataParallel"),  # one process's shuffled order, shared
        ("fsdp", 1, False, "FSDPSequential"),  # fully_shard makes the module's class an FSDP one
        ("fsdp", 2, True, "FSDPSequential"),  # micro-batches: gradients sync on the last only
    ],
)
def test_two_processes_train_as_one_with_the_same_global_batch(
    tmp_path: Path,
    alone: dict[bool, dict[str, object]],
    strategy: str,
    accumulation: int,
    shuffle: bool,
    wrapper: str,
) -> None:
    one = alone[shuffle]
    two = train(tmp_path, strategy, accumulation, 2, shuffle=shuffle)
    assert two["wrapper"] == wrapper
    assert two["seen"] == 256 and one["seen"] == 512  # each rank trains on its half
    assert two["steps"] == one["steps"] == 16
    for mine, theirs in zip(two["params"], one["params"], strict=True):  # type: ignore[call-overload]
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-4)
    if strategy == "fsdp":  # each rank holds half of every parameter (dim 0), not a copy
        whole = [p.numel() for p in one["params"]]  # type: ignore[attr-defined]
        assert all(local < n for local, n in zip(two["local"], whole, strict=True))  # type: ignore[call-overload]
