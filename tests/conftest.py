from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Two test workers share the cores, and the trials their tests start run torch's OpenMP
# threads side by side. libgomp's idle threads spin by default, taking the cores the other
# side's threads are computing on: two 2-thread CNN runs beside each other on 2 cores took
# 19 s each with spinning threads against 5 s with sleeping ones (2 s alone). No test asserts
# a speed, so the suite lets idle threads sleep. libgomp reads this once, when torch loads
# it: set here, before torch is imported, in the process that starts the workers, so they
# and every trial they start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

sys.path.insert(0, str(Path(__file__).parent))

from pg_server import Server, missing_reason, running_server

#: The longest tests (a minute or so each in CI), started first: with two workers, one
#: of them started last would keep a worker busy alone at the end while the other idles.
LONGEST = (
    "tests/frontends/test_tune_time_to_loss.py::test_time_to_loss_tunes_the_schedule",
    "tests/search/test_shared_study.py::",
    "tests/test_examples.py::test_tune_then_run",
    "tests/trials/test_script_trials.py::test_a_stop_keeps_the_best_so_far",
    "tests/frontends/test_advise_time_to_loss.py::",
    "tests/faults/test_tune_faults.py::test_a_short_budget",
    # ... and in the default run, those that wait out a trial's timeout or start torchrun
    "tests/trials/test_ddp_trials.py::",
    "tests/trials/test_script_trials.py::test_a_hanging_trial",
    "tests/trials/test_script_trials.py::test_a_two_process",
    "tests/test_lightning.py::test_a_trial_applies",
    "tests/test_hf.py::test_a_trial_applies",
    "tests/test_lightning.py::test_validation_step_is_the_held_out_score",
    "tests/frontends/test_advise.py::test_advise_searches_proves",
)


def _rank(item: pytest.Item) -> int:
    """Where a test starts: the longest first, in ``LONGEST``'s order, then the rest."""
    return next((i for i, part in enumerate(LONGEST) if part in item.nodeid), len(LONGEST))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the rest keep their order
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def process_state_kept() -> Iterator[None]:
    """Threads, matmul precision and cuDNN autotuning as they were before the test (a
    normal run of a tuned config sets them for the rest of the process)."""
    from autoaccel.process import preserved_process_state

    with preserved_process_state():
        yield


@pytest.fixture(scope="session")
def postgres() -> Iterator[Server]:
    """A throwaway PostgreSQL server on loopback (``tests/pg_server.py``); skipped where
    none can start, except in CI."""
    reason = missing_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL for the shared-study tests: {reason}")
        pytest.skip(reason)
    with running_server() as server:
        yield server
