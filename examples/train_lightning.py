"""Train train_cnn.py's image classifier with PyTorch Lightning: one line differs from a
plain Lightning script (``import autoaccel.lightning as L`` for ``import lightning as L``).

    python examples/train_lightning.py --epochs 3           # your settings (or autoaccel.yaml)
    autoaccel tune examples/train_lightning.py --budget 3m  # find the fastest setup here
    autoaccel run examples/train_lightning.py               # train with it

The model and the made-up, augmented images are train_cnn.py's; the datamodule's
``batch_size`` attribute is where autoaccel sets the tuned batch size, as Lightning's own
BatchSizeFinder would.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from train_cnn import AugmentedImages, make_model

import autoaccel.lightning as L  # the one changed line; was: import lightning as L


class Classifier(L.LightningModule):
    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = make_model()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y), prog_bar=True)
        self.log("val_accuracy", (logits.argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


class Images(L.LightningDataModule):
    def __init__(self, batch_size: int = 32, samples: int = 4096) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.samples = samples

    def setup(self, stage: str) -> None:
        self.train = AugmentedImages(self.samples)
        self.val = TensorDataset(*AugmentedImages(1024, seed=1).plain())  # held out

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="passes over the data")
    parser.add_argument("--batch-size", type=int, default=32, help="your own batch size")
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate")
    parser.add_argument("--samples", type=int, default=4096, help="images in the data set")
    args = parser.parse_args()

    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(max_epochs=args.epochs)  # autoaccel's Trainer: Lightning's, tuned
    data = Images(args.batch_size, args.samples)
    trainer.fit(Classifier(args.lr), datamodule=data)
    print(f"batch_size={data.batch_size} precision={trainer.precision}", flush=True)


if __name__ == "__main__":
    main()
