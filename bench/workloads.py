"""Reference workloads for the benchmarks: real models and data that fit this machine.

Each builder returns ``(model, data, description)`` where data is what ``advise()`` takes.

- ``cnn``: a small CNN on 32x32 images with per-sample CPU augmentation (pad-and-crop,
  flip, normalise, in Python per sample), so loading costs real time.
- ``mlp``: an MLP on in-memory tabular tensors.
- ``transformer``: a tiny Transformer language model on token sequences (next-token
  prediction; targets are the inputs shifted by one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset


class AugmentedImages(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """uint8 images, augmented per sample on the CPU like a torchvision pipeline."""

    def __init__(self, n: int = 4096, classes: int = 10, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, classes, (n,), generator=g)
        # Class-dependent means make the task learnable.
        base = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        shift = (self.labels.view(-1, 1, 1, 1) * 12).to(torch.uint8)
        self.images = base // 2 + shift
        self.mean = torch.tensor([0.5, 0.5, 0.5]).view(3, 1, 1)
        self.std = torch.tensor([0.25, 0.25, 0.25]).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.images[i].float() / 255
        img = F.pad(img, (4, 4, 4, 4), mode="reflect")
        top, left = torch.randint(0, 9, (2,)).tolist()
        img = img[:, top : top + 32, left : left + 32]
        if torch.rand(()) < 0.5:
            img = img.flip(-1)
        img = (img - self.mean) / self.std
        return img, self.labels[i]


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def cnn() -> tuple[nn.Module, Any, str]:
    torch.manual_seed(0)
    return SmallCNN(), AugmentedImages(), "small CNN, 4096 32x32 images, per-sample augmentation"


def mlp() -> tuple[nn.Module, Any, str]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50_000, 64, generator=g)
    w = torch.randn(64, 10, generator=g)
    y = (x @ w).argmax(1)
    model = nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    )
    return model, (x, y), "MLP 64-256-256-10, 50,000 in-memory tabular rows"


class TinyLM(nn.Module):
    def __init__(
        self, vocab: int = 256, dim: int = 64, layers: int = 2, heads: int = 4, context: int = 32
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(torch.zeros(context, dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        h = self.embed(tokens) + self.position[:t]
        h = self.blocks(h, mask=self.mask[:t, :t], is_causal=True)
        return self.head(h)


def transformer() -> tuple[nn.Module, Any, str]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    # A repetitive "text" so the model has something to learn.
    stream = torch.arange(200_000) % 97 + torch.randint(0, 3, (200_000,), generator=g) * 50
    stream = stream % 256
    context = 32
    n = (len(stream) - 1) // context
    x = stream[: n * context].view(n, context)
    y = stream[1 : n * context + 1].view(n, context)
    return TinyLM(context=context), (x, y), f"tiny Transformer LM, {n:,} sequences of {context}"


WORKLOADS: dict[str, Callable[[], tuple[nn.Module, Any, str]]] = {
    "cnn": cnn,
    "mlp": mlp,
    "transformer": transformer,
}
