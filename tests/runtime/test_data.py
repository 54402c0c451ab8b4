"""The caller's data, and loaders rebuilt from it with a config's settings."""

from __future__ import annotations

import pytest
import torch
from models import Pairs, tabular
from torch.utils.data import DataLoader, SequentialSampler, TensorDataset

from autoaccel.config import TrainingConfig
from autoaccel.errors import DataError
from autoaccel.runtime.data import build_loader, describe_data


def collate_pairs(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    xs, ys = zip(*batch, strict=True)
    return torch.stack(xs) * 2, torch.stack(ys)


def test_a_dataloader_keeps_its_dataset_collate_sampler_and_drop_last() -> None:
    dataset = Pairs(50)
    sampler = SequentialSampler(range(40))
    loader = DataLoader(
        dataset, batch_size=8, sampler=sampler, collate_fn=collate_pairs, drop_last=True
    )
    spec = describe_data(loader)
    assert spec.dataset is dataset and spec.collate_fn is collate_pairs and spec.drop_last
    assert spec.batch_size == 8 and spec.sampler is None  # a plain sequential order
    rebuilt = build_loader(spec, TrainingConfig(batch_size=16))
    batches = list(rebuilt)
    assert [len(b[0]) for b in batches] == [16, 16, 16]  # 50 samples, last 2 dropped
    assert torch.equal(batches[0][0], dataset.x[:16].flip(-1) * 2)  # the user's collate


def test_shuffle_is_kept() -> None:
    spec = describe_data(DataLoader(Pairs(), batch_size=4, shuffle=True))
    assert spec.shuffle
    spec = describe_data(Pairs(), loader_kwargs={"batch_size": 4})
    assert not spec.shuffle and spec.batch_size == 4


def test_batch_fetch_gives_the_same_batches_as_collating() -> None:
    x, y = tabular(100)
    spec = describe_data(DataLoader(TensorDataset(x, y), batch_size=32))
    per_sample = list(build_loader(spec, TrainingConfig(batch_size=32)))
    whole = list(build_loader(spec, TrainingConfig(batch_size=32, batch_fetch=True)))
    assert len(per_sample) == len(whole) == 4
    for a, b in zip(per_sample, whole, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_batch_fetch_with_workers() -> None:
    spec = describe_data(tabular(64))
    config = TrainingConfig(batch_size=16, batch_fetch=True, num_workers=1, persistent_workers=True)
    batches = list(build_loader(spec, config))
    assert sum(len(b[0]) for b in batches) == 64


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ((torch.zeros(0, 3), torch.zeros(0)), "the dataset is empty"),
        ((torch.zeros(4, 3), torch.zeros(5)), r"same first dimension, got shapes \(4, 3\), \(5,\)"),
        ([1, 2, 3], "data must be a Dataset, a DataLoader or a tuple of tensors"),
        (DataLoader(Pairs(), batch_size=None), "batch_size=None"),
    ],
)
def test_bad_data(data: object, match: str) -> None:
    with pytest.raises(DataError, match=match):
        describe_data(data)


def test_unknown_loader_kwargs() -> None:
    with pytest.raises(DataError, match=r"loader_kwargs: unknown key\(s\) shufle"):
        describe_data(Pairs(), loader_kwargs={"shufle": True})
