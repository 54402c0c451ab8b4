"""Train a tiny character language model that batches by itself (no DataLoader).

    python examples/train_lm.py --steps 200
    autoaccel tune examples/train_lm.py --budget 2m
    autoaccel tune examples/train_lm.py --objective time-to-loss
    autoaccel run examples/train_lm.py

Like nanoGPT, the script slices random windows out of one long token array in get_batch();
autoaccel chooses the batch size (``run.batch_size``) and the precision, and ``run.step()``
marks each step for the meter. The text is generated here, so nothing is downloaded.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import autoaccel

CONTEXT = 32
VOCAB = 64


def make_text(length: int = 200_000, seed: int = 0) -> torch.Tensor:
    """A token stream with structure to learn: repeating phrases with noise."""
    g = torch.Generator().manual_seed(seed)
    phrases = torch.randint(0, VOCAB, (50, 12), generator=g)
    picks = torch.randint(0, 50, (length // 12 + 1,), generator=g)
    stream = phrases[picks].flatten()[:length]
    noise = torch.rand(length, generator=g) < 0.05
    return torch.where(noise, torch.randint(0, VOCAB, (length,), generator=g), stream)


class TinyLM(nn.Module):
    def __init__(self, dim: int = 64, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim)
        self.position = nn.Parameter(torch.zeros(CONTEXT, dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, VOCAB)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(CONTEXT))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.position
        return self.head(self.blocks(h, mask=self.mask, is_causal=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps to train")
    parser.add_argument("--batch-size", type=int, default=16, help="your own batch size")
    parser.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate")
    args = parser.parse_args()

    torch.manual_seed(0)
    stream = make_text()
    text, val = stream[:180_000], stream[180_000:]  # the last 10% held out
    model = TinyLM()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)

    val_starts = torch.arange(0, len(val) - CONTEXT - 1, 97)  # fixed windows: a steady score

    def estimate_loss() -> float:
        """The mean validation loss (autoaccel calls it in eval mode, without gradients)."""
        x = torch.stack([val[s : s + CONTEXT] for s in val_starts])
        y = torch.stack([val[s + 1 : s + CONTEXT + 1] for s in val_starts])
        return F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1)).item()

    run = autoaccel.prepare(model, optimizer, batch_size=args.batch_size, evaluate=estimate_loss)
    print(
        f"batch_size={run.batch_size} precision={run.config.precision} "
        f"threads={torch.get_num_threads()}",
        flush=True,
    )

    def get_batch(batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(text) - CONTEXT - 1, (batch_size,))
        x = torch.stack([text[s : s + CONTEXT] for s in starts])
        y = torch.stack([text[s + 1 : s + CONTEXT + 1] for s in starts])
        return x.to(run.device), y.to(run.device)

    steps = 10**9 if autoaccel.in_trial() else args.steps * run.grad_accum_steps
    for step in range(steps):
        x, y = get_batch(run.batch_size)
        with run.autocast():
            logits = run.model(x)
            loss = F.cross_entropy(logits.reshape(-1, VOCAB).float(), y.reshape(-1))
        run.backward(loss)
        run.step()
        if (step + 1) % 50 == 0:
            print(f"step {step + 1}: loss {loss.item():.3f}", flush=True)


if __name__ == "__main__":
    main()
