"""The caller's data, and loaders rebuilt from it with a config's settings."""

from __future__ import annotations

import pytest
import torch
from models import Pairs, tabular
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, TensorDataset

from autoaccel.config import TrainingConfig
from autoaccel.errors import DataError
from autoaccel.runtime.data import GlobalOrderSampler, build_loader, describe_data


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


def shares(
    size: int, world: int, *, seed: int = 0, generator_seed: int | None = None, **kwargs: bool
) -> tuple[list[list[int]], torch.Tensor]:
    """Each rank's indices for one epoch, the ranks run one after the other in this process;
    every rank starts from its own global RNG state (rank r from ``seed + r``), and
    ``share`` hands them rank 0's draw as the broadcast does. Also the global RNG's next
    draw after rank 0's epoch."""
    drawn: list[object] = []

    def share(value: object) -> object:
        drawn.append(value)
        return drawn[0]

    out, after = [], torch.empty(0)
    for rank in range(world):
        torch.manual_seed(seed + rank)
        generator = None
        if generator_seed is not None:
            generator = torch.Generator().manual_seed(generator_seed + rank)
        sampler = GlobalOrderSampler(
            TensorDataset(torch.arange(size)),
            world=world,
            rank=rank,
            generator=generator,
            share=share,
            shuffle=kwargs.get("shuffle", True),
            drop_last=kwargs.get("drop_last", False),
        )
        sampler.set_epoch(5)  # a DDP script's call changes nothing
        out.append(list(sampler))
        assert len(sampler) == len(out[-1])
        if rank == 0:
            after = torch.rand(3)
    return out, after


def one_process(size: int, *, seed: int = 0, generator_seed: int | None = None) -> list[int]:
    torch.manual_seed(seed)
    generator = None if generator_seed is None else torch.Generator().manual_seed(generator_seed)
    return list(RandomSampler(range(size), generator=generator))


@pytest.mark.parametrize("generator_seed", [None, 7])
def test_processes_share_one_process_order_step_by_step(generator_seed: int | None) -> None:
    world, batch = 2, 3
    ranks, after = shares(24, world, generator_seed=generator_seed)
    alone = one_process(24, generator_seed=generator_seed)
    for step in range(24 // (world * batch)):
        together = sorted(i for r in ranks for i in r[step * batch : (step + 1) * batch])
        assert together == sorted(alone[step * world * batch : (step + 1) * world * batch])
    # The global RNG moves on as it does under RandomSampler: the next epoch's draw is too.
    one_process(24, generator_seed=generator_seed)
    assert torch.equal(after, torch.rand(3))


def test_ranks_with_other_rng_states_still_split_one_order() -> None:
    ranks, _ = shares(10, 2, seed=3)  # rank 1 seeded 4: its own draw is not used
    assert sorted(ranks[0] + ranks[1]) == list(range(10))


@pytest.mark.parametrize(
    ("drop_last", "lengths", "covered"), [(False, [4, 4, 4], 11), (True, [3, 3, 3], 9)]
)
def test_an_uneven_order_is_padded_or_trimmed(
    drop_last: bool, lengths: list[int], covered: int
) -> None:
    ranks, _ = shares(11, 3, drop_last=drop_last)
    assert [len(r) for r in ranks] == lengths  # padded with the order's start, or trimmed
    assert len({i for r in ranks for i in r}) == covered


def test_without_shuffle_the_ranks_take_turns_in_dataset_order() -> None:
    ranks, _ = shares(6, 2, shuffle=False)
    assert ranks == [[0, 2, 4], [1, 3, 5]]
