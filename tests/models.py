"""Small real models and data for the tests."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from autoaccel.measure import MeterSettings
from autoaccel.time_to_loss import CurvePoint

# Short trials: the tests check behaviour, not speed.
FAST = MeterSettings(
    min_warmup_steps=2,
    settle_steps=2,
    settle_tolerance=1.0,
    max_warmup_s=0.3,
    window_s=0.1,
    min_window_steps=3,
    blocks=3,
    max_trial_s=10,
)


#: A training script with a tiny model, trained until the trial stops it (a trial takes
#: ~2 s, start-up included); the script-level tests start from it.
TINY_SCRIPT = """
import torch
from torch import nn
import autoaccel

model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(8192, 16), torch.randint(0, 2, (8192,))
run = autoaccel.prepare(model, opt, (x, y), loader_kwargs={"batch_size": 32})
while True:
    for xb, yb in run.loader:
        run.backward(torch.nn.functional.cross_entropy(run.model(xb), yb))
        run.step()
"""


def mlp(inputs: int = 16, classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(inputs, 32), nn.ReLU(), nn.Linear(32, classes))


def tabular(n: int = 512, inputs: int = 16, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, inputs, generator=g), torch.randint(0, classes, (n,), generator=g)


def learnable(
    n: int = 2048, inputs: int = 16, classes: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels a linear teacher gives: a model can learn them, so losses fall. The teacher
    is the same whatever ``n``, so a smaller call is a validation set for a larger one."""
    g = torch.Generator().manual_seed(1)
    teacher = torch.randn(inputs, classes, generator=g)
    x = torch.randn(n, inputs, generator=g)
    return x, (x @ teacher).argmax(1)


class OutOfMemoryAbove(nn.Module):
    """Asks the real CPU allocator for an impossible tensor when the batch is too large."""

    def __init__(self, limit: int, inputs: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.limit = limit
        self.net = nn.Linear(inputs, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit:
            torch.empty(2**62, dtype=torch.uint8)  # RuntimeError: ... can't allocate memory
        return self.net(x)


class TinyConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean((2, 3)))


class Pairs(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A map-style dataset with per-sample work, like an image pipeline."""

    def __init__(self, n: int = 64) -> None:
        self.x = torch.randn(n, 3, 8, 8)
        self.y = torch.randint(0, 2, (n,))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i].flip(-1), self.y[i]


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A metric for goals: the batch's share of right answers."""
    return (output.argmax(-1) == target).float().mean()


def curve_of(*points: tuple[float, float]) -> tuple[CurvePoint, ...]:
    """A held-out curve from (seconds, loss) pairs, one optimizer step apart."""
    return tuple(CurvePoint(t, i, loss) for i, (t, loss) in enumerate(points))
