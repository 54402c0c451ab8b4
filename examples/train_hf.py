"""Train a tiny transformer classifier with the Hugging Face Trainer: one line differs from
a plain HF script (``from autoaccel.hf import Trainer, TrainingArguments``).

    python examples/train_hf.py --epochs 3           # your settings (or autoaccel.yaml)
    autoaccel tune examples/train_hf.py --budget 3m  # find the fastest setup here
    autoaccel run examples/train_hf.py               # train with it

The model is built in code and the data is made up (no download): "reviews" of 32 tokens,
positive when their good words outnumber their bad ones, with 10% of the labels wrong, as
real labels are: the held-out loss levels off near 0.37 rather than falling towards 0.
"""

from __future__ import annotations

import argparse

import torch
import transformers
from torch.utils.data import Dataset
from transformers import BertConfig, BertForSequenceClassification

from autoaccel.hf import Trainer, TrainingArguments  # was: from transformers import (the same)


class Sequences(Dataset):
    """Made-up reviews: positive when their "good" words (tokens 2-9) outnumber their "bad"
    ones (10-17), with ``noise`` of the labels flipped, as real labels are never all right."""

    def __init__(
        self, n: int, length: int = 32, vocab: int = 64, seed: int = 0, noise: float = 0.1
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(2, vocab, (n, length), generator=g)
        good = ((self.ids >= 2) & (self.ids < 10)).sum(1)
        bad = ((self.ids >= 10) & (self.ids < 18)).sum(1)
        flipped = torch.rand(n, generator=g) < noise
        self.labels = ((good > bad) ^ flipped).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = self.ids[i]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": self.labels[i]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=3, help="passes over the data")
    parser.add_argument("--batch-size", type=int, default=32, help="your own batch size")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    parser.add_argument("--samples", type=int, default=4096, help="sequences in the data set")
    args = parser.parse_args()

    transformers.set_seed(0)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=64,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            max_position_embeddings=64,
            num_labels=2,
        )
    )
    training = TrainingArguments(
        output_dir="hf-output",
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=args.epochs,
        learning_rate=args.lr,
        eval_strategy="epoch",
        logging_steps=50,
        save_strategy="no",
        report_to="none",
    )
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=Sequences(args.samples),
        eval_dataset=Sequences(512, seed=1),  # held out
    )
    trainer.train()
    used = trainer.args
    precision = "bf16-mixed" if used.bf16 else "16-mixed" if used.fp16 else "32-true"
    print(f"batch_size={used.per_device_train_batch_size} precision={precision}", flush=True)


if __name__ == "__main__":
    main()
