"""prepare() behaves like the plain PyTorch loop it replaces, in the ways real scripts use it.

Each usage pattern runs three times from the same seed: as the plain loop (the script's own
DataLoader, ``loss.backward()``, ``optimizer.step()``), through ``prepare()`` without a
config, and through ``prepare()`` with a config applied. Without a config the batch counts
and the loss trajectory must be identical; with one, every epoch must see every sample (or
all but the dropped tail with ``drop_last``) in the number of batches its batch size gives.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from models import mlp, tabular
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import autoaccel
from autoaccel.config import TrainingConfig
from autoaccel.errors import DataError

SAMPLES = 200
EPOCHS = 3
LOSS = nn.CrossEntropyLoss()
USER_BATCH = 16  # the script's own
CONFIGS = {  # prepare() with a config: other batch sizes, whole-batch indexing, a worker
    "batch 48": TrainingConfig(batch_size=48),
    "batch 64, batch_fetch, accumulation 2": TrainingConfig(
        batch_size=64, batch_fetch=True, grad_accum_steps=2
    ),
    "batch 32, 1 persistent worker": TrainingConfig(
        batch_size=32, num_workers=1, persistent_workers=True
    ),
}


@dataclass
class Trace:
    """What a loop did: batches and samples per epoch, and every loss in order."""

    batches: list[int] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


class Loop:
    """The few calls a script makes, either written by hand or through ``prepare()``."""

    def __init__(self, data: str, *, how: str, config: TrainingConfig | None = None) -> None:
        torch.manual_seed(0)
        self.model = mlp()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)
        x, y = tabular(SAMPLES)
        kwargs: dict[str, Any] = {"batch_size": USER_BATCH, "shuffle": True, "drop_last": False}
        if data == "tensors":  # prepare((X, y)): shuffled, batch 32, as its docs say
            given: Any = (x, y)
            kwargs = {"batch_size": 32, "shuffle": True}
        elif data == "dataloader":  # with its own shuffle RNG, whose order must be kept
            kwargs = {
                "batch_size": USER_BATCH,
                "shuffle": True,
                "drop_last": True,
                "generator": torch.Generator().manual_seed(1),
            }
            given = DataLoader(TensorDataset(x, y), **kwargs)
        else:
            given = TensorDataset(x, y)
        self.drop_last = bool(kwargs.get("drop_last", False))
        self.run: autoaccel.Run | None = None
        self.stepped = True
        if how == "plain":
            self.loader: Iterable[Any] = DataLoader(TensorDataset(x, y), **kwargs)
            self.batch_size = kwargs["batch_size"]
        else:
            self.run = autoaccel.prepare(
                self.model,
                self.optimizer,
                given,
                loader_kwargs=kwargs if data == "dataset" else None,
                config=config,
            )
            self.loader = self.run.loader
            self.batch_size = self.run.batch_size

    def loader_now(self) -> Iterable[Any]:
        """The loader as a script reads it at the top of an epoch."""
        return self.run.loader if self.run is not None else self.loader

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        if self.run is None:
            loss = LOSS(self.model(x), y)
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        else:
            with self.run.autocast():
                loss = LOSS(self.run.model(x), y)
            self.run.backward(loss)
            self.stepped = self.run.step()
        return loss.item()


def epoch(loop: Loop, loader: Iterable[Any], trace: Trace, *, stop_after: int = 0) -> None:
    batches = samples = 0
    for x, y in loader:
        trace.losses.append(loop.train_step(x, y))
        batches += 1
        samples += len(x)
        if batches == stop_after:
            break
    trace.batches.append(batches)
    trace.samples.append(samples)


# The patterns: each is how some real script drives its loader.


def kept_loader(loop: Loop) -> Trace:
    """``train_loader = run.loader`` once, then epochs over the variable."""
    trace, loader = Trace(), loop.loader
    for _ in range(EPOCHS):
        epoch(loop, loader, trace)
    return trace


def read_each_epoch(loop: Loop) -> Trace:
    """``for x, y in run.loader`` written inside the epoch loop."""
    trace = Trace()
    for _ in range(EPOCHS):
        epoch(loop, loop.loader_now(), trace)
    return trace


def len_for_a_scheduler(loop: Loop) -> Trace:
    """``OneCycleLR(total_steps=len(loader) * epochs)``: it raises if stepped once too often."""
    trace, loader = Trace(), loop.loader
    accumulation = loop.run.grad_accum_steps if loop.run is not None else 1
    steps = len(loader) * EPOCHS // accumulation  # type: ignore[arg-type]
    scheduler = torch.optim.lr_scheduler.OneCycleLR(loop.optimizer, 0.1, total_steps=steps)
    for _ in range(EPOCHS):
        batches = 0
        for x, y in loader:
            trace.losses.append(loop.train_step(x, y))
            if loop.stepped:  # the optimizer stepped (not so mid-accumulation)
                scheduler.step()
            batches += 1
        trace.batches.append(batches)
    assert scheduler.last_epoch == steps
    return trace


def with_enumerate(loop: Loop) -> Trace:
    trace, loader = Trace(), loop.loader
    for _ in range(EPOCHS):
        count = 0
        for i, (x, y) in enumerate(loader):
            trace.losses.append(loop.train_step(x, y))
            count = i + 1
        trace.batches.append(count)
    return trace


def next_iter_first(loop: Loop) -> Trace:
    """One batch looked at first (shapes, a sanity check), then whole epochs."""
    trace, loader = Trace(), loop.loader
    x, _ = next(iter(loader))
    trace.samples.append(len(x))
    for _ in range(EPOCHS):
        epoch(loop, loader, trace)
    return trace


def break_mid_epoch(loop: Loop) -> Trace:
    """A capped epoch (``if i == max_steps: break``), then full ones on the same loader."""
    trace, loader = Trace(), loop.loader
    epoch(loop, loader, trace, stop_after=3)
    for _ in range(EPOCHS - 1):
        epoch(loop, loader, trace)
    return trace


PATTERNS: dict[str, tuple[str, Callable[[Loop], Trace]]] = {
    "kept loader variable": ("dataset", kept_loader),
    "len(loader) for a scheduler": ("dataset", len_for_a_scheduler),
    "enumerate": ("dataset", with_enumerate),
    "next(iter(loader))": ("dataset", next_iter_first),
    "several epochs, run.loader each time": ("dataset", read_each_epoch),
    "break mid-epoch, then a new epoch": ("dataset", break_mid_epoch),
    "a user DataLoader passed in": ("dataloader", kept_loader),
    "tensors (X, y)": ("tensors", kept_loader),
}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_without_a_config_prepare_is_the_plain_loop(pattern: str) -> None:
    data, drive = PATTERNS[pattern]
    plain = drive(Loop(data, how="plain"))
    prepared = drive(Loop(data, how="prepare"))
    assert plain.batches and all(plain.batches)  # every epoch trained
    assert prepared.batches == plain.batches
    assert prepared.samples == plain.samples
    assert prepared.losses == plain.losses  # bit for bit: same order, same arithmetic


@pytest.mark.parametrize("config_name", CONFIGS)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_with_a_config_every_epoch_sees_all_its_batches(pattern: str, config_name: str) -> None:
    data, drive = PATTERNS[pattern]
    loop = Loop(data, how="prepare", config=CONFIGS[config_name])
    trace = drive(loop)
    whole = SAMPLES // loop.batch_size if loop.drop_last else math.ceil(SAMPLES / loop.batch_size)
    full_epochs = trace.batches[1:] if pattern.startswith("break") else trace.batches
    assert full_epochs == [whole] * len(full_epochs)
    assert len(trace.batches) == EPOCHS and all(math.isfinite(v) for v in trace.losses)
    if trace.samples and pattern != "next(iter(loader))":
        kept = whole * loop.batch_size if loop.drop_last else SAMPLES
        assert trace.samples[-1] == kept  # no sample silently dropped


def test_a_self_batching_script_is_the_plain_loop() -> None:
    """nanoGPT-style: the script slices its own tensors with run.batch_size."""
    x, y = tabular(SAMPLES)

    def drive(prepared: bool) -> list[float]:
        torch.manual_seed(0)
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        batch, step_model, run = 16, model, None
        if prepared:
            run = autoaccel.prepare(model, optimizer, batch_size=batch)
            batch, step_model = run.batch_size, run.model
        losses = []
        for _ in range(40):
            index = torch.randint(0, SAMPLES, (batch,))
            loss = LOSS(step_model(x[index]), y[index])
            if run is None:
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            else:
                run.backward(loss)
                run.step()
            losses.append(loss.item())
        return losses

    assert drive(prepared=True) == drive(prepared=False)


def test_the_loader_looks_like_the_dataloader_it_wraps() -> None:
    x, y = tabular(SAMPLES)
    dataset = TensorDataset(x, y)
    for config in (None, TrainingConfig(batch_size=64, batch_fetch=True)):
        model = mlp()
        run = autoaccel.prepare(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            dataset,
            loader_kwargs={"batch_size": 16, "drop_last": True},
            config=config,
        )
        loader = run.loader
        assert run.loader is loader  # one object, however often it is read
        assert loader.dataset is dataset  # the caller's, also when batches are fetched whole
        assert loader.drop_last is True and loader.batch_size == run.batch_size
        assert len(loader) == SAMPLES // run.batch_size
        assert isinstance(loader.sampler, torch.utils.data.SequentialSampler)
        assert loader.num_workers == 0  # the DataLoader's other attributes read through


def test_set_epoch_reaches_a_distributed_sampler() -> None:
    x, y = tabular(SAMPLES)
    sampler = torch.utils.data.DistributedSampler(
        TensorDataset(x, y), num_replicas=2, rank=0, shuffle=True, seed=0
    )
    model = mlp()
    run = autoaccel.prepare(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        DataLoader(TensorDataset(x, y), batch_size=10, sampler=sampler),
    )
    orders = []
    for e in range(2):
        run.loader.set_epoch(e)
        assert sampler.epoch == e
        orders.append(torch.cat([xb for xb, _ in run.loader]))
    assert len(run.loader) == SAMPLES // 2 // 10
    assert not torch.equal(orders[0], orders[1])  # a new shuffle each epoch, as with DDP


def test_a_kept_loader_after_close_names_the_problem() -> None:
    model = mlp()
    run = autoaccel.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1), tabular(64))
    loader = run.loader
    run.close()
    with pytest.raises(DataError, match=r"run\.loader was used after run\.close\(\)"):
        iter(loader)


def test_a_script_keeps_model_optimizer_scheduler_and_autocast() -> None:
    """Stored once, as nanoGPT stores ``ctx``; each must keep working over several epochs."""
    config = TrainingConfig(
        batch_size=32,
        precision="bf16-mixed",
        lr=0.05,
        schedule="cosine",
        warmup_steps=2,
        schedule_steps=EPOCHS * math.ceil(SAMPLES / 32),
    )
    torch.manual_seed(0)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = autoaccel.prepare(model, optimizer, tabular(SAMPLES), config=config)
    net, opt, scheduler, ctx, loader = (
        run.model,
        run.optimizer,
        run.scheduler,
        run.autocast(),
        run.loader,
    )
    assert scheduler is not None and opt is optimizer
    before = [p.detach().clone() for p in net.parameters()]
    lrs = []
    for _ in range(EPOCHS):
        for x, y in loader:
            with ctx:
                out = net(x)
                assert out.dtype == torch.bfloat16  # the stored context still applies
                loss = LOSS(out, y)
            lrs.append(opt.param_groups[0]["lr"])  # the LR this step trains with
            run.backward(loss)
            run.step()
        assert not torch.is_autocast_enabled("cpu")  # and is left after each use
    steps = EPOCHS * len(loader)
    assert run.optimizer_steps == steps and scheduler.last_epoch == steps
    assert lrs[0] < lrs[1] and lrs[-1] < lrs[steps // 2]  # warm-up, then the cosine decay
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
