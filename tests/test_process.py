"""Process-wide settings: set for a run, scoped for a trial, restored for the caller."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from autoaccel.config import TrainingConfig
from autoaccel.process import applied_settings, apply_process_settings, preserved_process_state


@pytest.fixture(autouse=True)
def _restored() -> Iterator[None]:
    with preserved_process_state(rng=True):
        yield


def test_apply_sets_threads_and_tf32_matmul() -> None:
    apply_process_settings(TrainingConfig(num_threads=1, precision="tf32"))
    assert torch.get_num_threads() == 1
    assert torch.get_float32_matmul_precision() == "high"
    threads = torch.get_num_threads()
    apply_process_settings(TrainingConfig(precision="bf16-mixed"))  # None: keep the threads
    assert torch.get_num_threads() == threads


def test_settings_are_restored_even_after_an_error() -> None:
    threads = torch.get_num_threads()
    matmul = torch.get_float32_matmul_precision()
    with (
        pytest.raises(RuntimeError, match="boom"),
        applied_settings(TrainingConfig(num_threads=1, precision="tf32")),
    ):
        assert torch.get_num_threads() == 1
        assert torch.get_float32_matmul_precision() == "high"
        raise RuntimeError("boom")
    assert torch.get_num_threads() == threads
    assert torch.get_float32_matmul_precision() == matmul


def test_rng_states_come_back_only_when_asked() -> None:
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    expected = (torch.rand(2), random.random(), np.random.rand())
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    with preserved_process_state(rng=True):
        torch.rand(5), random.random(), np.random.rand(4)  # draws the caller never sees
    again = (torch.rand(2), random.random(), np.random.rand())
    assert torch.equal(expected[0], again[0]) and expected[1:] == again[1:]
    with preserved_process_state():
        torch.rand(1)
    assert not torch.equal(torch.rand(2), expected[0])  # without rng=True the draw stands
