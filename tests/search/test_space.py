from __future__ import annotations

import pytest
import torch

from autoaccel.config import TrainingConfig
from autoaccel.probe import probe_system
from autoaccel.search.space import MemoryModel, build_space


def test_memory_model_from_one_point_is_proportional() -> None:
    model = MemoryModel(budget_bytes=1000)
    model.observe(10, 100)
    assert model.predict(20) == pytest.approx(200)
    assert model.max_batch_size() == 85  # 0.85 x 1000 / 10 per sample


def test_memory_model_fits_a_line_on_several_points() -> None:
    model = MemoryModel(budget_bytes=10_000)
    for batch in (8, 16, 32, 64):
        model.observe(batch, 1000 + 50 * batch)
    assert model.predict(128) == pytest.approx(1000 + 50 * 128)
    assert model.max_batch_size() == int((8500 - 1000) / 50)
    assert model.fits(128) and not model.fits(200)


def test_an_oom_caps_larger_batches() -> None:
    model = MemoryModel(budget_bytes=10**12)
    model.observe_oom(512)
    model.observe_oom(1024)
    assert model.smallest_oom == 512
    assert model.fits(256) and not model.fits(512) and not model.fits(2048)
    assert model.max_batch_size() == 511


def space_for(**kwargs: object) -> object:
    defaults = dict(
        dataset_size=4096,
        device=torch.device("cpu"),
        conv_model=False,
        tensor_data=True,
        baseline_memory_bytes=10_000_000,
    )
    defaults.update(kwargs)
    return build_space(probe_system(), TrainingConfig(batch_size=32, num_threads=2), **defaults)


def test_only_knobs_that_apply_here() -> None:
    profile = probe_system()
    space = space_for()
    names = space.names
    assert "channels_last" not in names and "channels_last" in space.excluded
    assert "batch_fetch" in names
    assert "pin_memory" not in names  # no GPU
    assert set(space.knob("precision").choices) == set(profile.supported_precisions()) - {"tf32"}
    assert max(space.knob("num_workers").choices) <= profile.cpu.usable_cores
    assert max(space.knob("num_threads").choices) <= max(profile.cpu.usable_cores, 2)
    assert 32 in space.knob("batch_size").choices
    assert max(space.knob("batch_size").choices) <= 2048  # half the dataset
    conv = space_for(conv_model=True, tensor_data=False)
    assert "channels_last" in conv.names and "batch_fetch" not in conv.names


def test_keep_global_batch_searches_micro_batches() -> None:
    space = space_for(keep_global_batch=True)
    sizes = space.knob("batch_size").choices
    assert max(sizes) == 32 and all(32 % b == 0 for b in sizes)
    config = space.config_for({**space.params_of(space.base), "batch_size": 8})
    assert config.batch_size * config.grad_accum_steps == 32


def test_grid_covers_every_combination() -> None:
    space = space_for()
    grid = space.grid()
    assert len(grid) == space.grid_size()
    assert len({tuple(sorted(p.items())) for p in grid}) == len(grid)


def test_workers_imply_persistent_workers() -> None:
    space = space_for()
    params = {**space.params_of(space.base), "num_workers": 1}
    config = space.config_for(params)
    assert config.persistent_workers and config.prefetch_factor == 2


def test_processes_are_searched_for_script_trials_with_the_cores_split() -> None:
    """DDP over 1..usable cores when trials are scripts (torchrun); each process gets its
    share of the cores in threads, so 2 x 2 threads on 2 cores is measured as 2 x 1."""
    import dataclasses

    profile = probe_system()
    wide = dataclasses.replace(profile, cpu=dataclasses.replace(profile.cpu, usable_cores=8))
    user = TrainingConfig(batch_size=32, num_threads=2)
    common = dict(
        dataset_size=4096,
        device=torch.device("cpu"),
        conv_model=False,
        tensor_data=True,
        baseline_memory_bytes=None,
    )
    assert "processes" in build_space(wide, user, **common).excluded  # in-process: one
    space = build_space(wide, user, include_parallel=True, **common)
    assert space.knob("processes").choices == (1, 2, 4, 8)
    config = space.config_for({**space.params_of(user), "processes": 4, "num_threads": 8})
    assert config.strategy == "ddp" and config.num_threads == 2  # 8 cores / 4 processes
    assert config.global_batch == 4 * 32
    one = dataclasses.replace(profile, cpu=dataclasses.replace(profile.cpu, usable_cores=1))
    why = build_space(one, user, include_parallel=True, **common).excluded["processes"]
    assert why == "one process: this machine has 1 usable cores"


def test_kept_global_batch_counts_processes() -> None:
    space = space_for(keep_global_batch=True, include_parallel=True)
    user_global = 32
    config = space.config_for({**space.params_of(space.base), "batch_size": 8, "processes": 2})
    assert config.batch_size * config.grad_accum_steps * config.processes == user_global


def test_several_processes_shard_the_model_when_a_whole_copy_does_not_fit() -> None:
    """DDP keeps a whole copy per process; past the device's room the search runs FSDP,
    and the space table shows the estimate it decided on (issue 14, item 1)."""
    from autoaccel.search.sharding import estimate_state

    gib, mib = 2**30, 2**20
    # 200 Mi parameters with Adam: 800 + 800 + 1600 MiB; the baseline grew by the
    # gradients, Adam's moments and 512 MiB of activations
    big = estimate_state(200 * mib, "Adam", (800 + 1600 + 512) * mib, 6 * gib, shared=True)
    small = estimate_state(10**6, "Adam", 10**8, 6 * gib, shared=True)
    assert big.activations == 512 * mib and big.fits_one()  # 3.6 GiB fits one process ...
    space = space_for(include_parallel=True, model_state=big)
    config = space.config_for({**space.params_of(space.base), "processes": 2})
    assert config.strategy == "fsdp"  # ... but two whole copies do not fit the RAM they share
    assert big.per_process("fsdp", 2) == (1600 + 512) * mib  # half the state each
    rows = {name: why for name, _, why in space.describe()}
    assert rows["strategy"].startswith("DDP with several processes (a whole copy fits one")
    assert (
        "parameters 0.78 GiB + gradients 0.78 GiB + Adam state 1.56 GiB + measured activations "
        "0.50 GiB = 3.62 GiB per process; the machine's free memory holds 6.00 GiB"
    ) in rows["strategy"]
    calm = space_for(include_parallel=True, model_state=small)
    assert calm.config_for({**calm.params_of(calm.base), "processes": 2}).strategy == "ddp"
    # A GPU holds one process each: 5 GiB of state on 4 GiB GPUs is FSDP over 2 or more.
    gpus = estimate_state(5 * gib // 16, "Adam", None, 4 * gib, shared=False)
    assert not gpus.fits_one() and gpus.devices_needed() == 2 and gpus.strategy_for(2) == "fsdp"
    assert gpus.advice(searched_processes=False).startswith("advised: FSDP over at least 2 GPUs")
    huge = estimate_state(10 * gib, "SGD", None, 6 * gib, shared=True)
    assert "does not fit this machine" in huge.advice(searched_processes=False)
