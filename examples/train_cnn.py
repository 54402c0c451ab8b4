"""Train a small image classifier with per-sample augmentation, the autoaccel way.

    python examples/train_cnn.py --epochs 3          # your own settings (or autoaccel.yaml)
    autoaccel tune examples/train_cnn.py --budget 2m # find the fastest setup here
    autoaccel tune examples/train_cnn.py --objective time-to-loss --target 0.95 --metric accuracy
    autoaccel run examples/train_cnn.py              # train with it

The data is made up (no download): 32x32 images whose colour depends on the class, so the
model has something to learn, augmented on the CPU sample by sample like a torchvision
pipeline (pad-and-crop, flip, normalise), so loading costs real time.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

import autoaccel


class AugmentedImages(Dataset):
    def __init__(self, n: int, classes: int = 10, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, classes, (n,), generator=g)
        noise = torch.randint(0, 128, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        self.images = noise + (self.labels.view(-1, 1, 1, 1) * 12).to(torch.uint8)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = F.pad(self.images[i].float() / 255, (4, 4, 4, 4), mode="reflect")
        top, left = torch.randint(0, 9, (2,)).tolist()
        img = img[:, top : top + 32, left : left + 32]
        if torch.rand(()) < 0.5:
            img = img.flip(-1)
        return (img - 0.5) / 0.25, self.labels[i]

    def plain(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as one batch, not augmented (for validation)."""
        return (self.images.float() / 255 - 0.5) / 0.25, self.labels


def make_model(classes: int = 10) -> nn.Module:
    return nn.Sequential(
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
        nn.Flatten(),
        nn.Linear(64, classes),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="passes over the data")
    parser.add_argument("--batch-size", type=int, default=32, help="your own batch size")
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate")
    parser.add_argument("--samples", type=int, default=4096, help="images in the data set")
    parser.add_argument("--checkpoint", help="save the trained weights here")
    args = parser.parse_args()

    torch.manual_seed(0)
    dataset = AugmentedImages(args.samples)
    val_x, val_y = AugmentedImages(1024, seed=1).plain()  # held out: other images
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

    def evaluate() -> dict[str, float]:
        """The validation loss and accuracy (autoaccel calls it in eval mode, no grad), on
        the device the model trains on (prepare() may have moved it)."""
        device = next(model.parameters()).device
        x, y = val_x.to(device), val_y.to(device)
        logits = model(x)
        accuracy = (logits.argmax(1) == y).float().mean()
        return {"loss": F.cross_entropy(logits, y).item(), "accuracy": accuracy.item()}

    # The integration: prepare() applies autoaccel.yaml (or a tuner's trial) ...
    run = autoaccel.prepare(
        model,
        optimizer,
        dataset,
        loader_kwargs={"batch_size": args.batch_size, "shuffle": True},
        evaluate=evaluate,  # ... and `tune --objective time-to-loss` scores setups with it
    )
    print(
        f"batch_size={run.batch_size} precision={run.config.precision} "
        f"workers={run.config.num_workers} threads={torch.get_num_threads()}",
        flush=True,
    )
    # Under `autoaccel tune` the script is stopped once a trial is measured; train on.
    epochs = 10**6 if autoaccel.in_trial() else args.epochs
    for epoch in range(epochs):
        total, correct, seen = 0.0, 0, 0
        for x, y in run.loader:  # ... batches arrive on run.device, in the chosen layout
            with run.autocast():
                logits = run.model(x)
                loss = F.cross_entropy(logits, y)
            run.backward(loss)
            run.step()
            total += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        print(
            f"epoch {epoch + 1}: loss {total / seen:.3f}, accuracy {correct / seen:.1%}", flush=True
        )
    # Side effects are guarded: trials never get here, but a script that saves during
    # training should check autoaccel.in_trial() first.
    if args.checkpoint and not autoaccel.in_trial():
        torch.save(model.state_dict(), args.checkpoint)


if __name__ == "__main__":
    main()
