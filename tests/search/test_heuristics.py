"""The diagnosis and its thresholds, and the guesses the search starts from."""

from __future__ import annotations

from dataclasses import replace

import torch

from autoaccel.config import TrainingConfig
from autoaccel.measure import Measurement
from autoaccel.probe import HardwareProfile, probe_system
from autoaccel.search import Diagnosis, SearchSpace, build_space, diagnose
from autoaccel.search.heuristics import guesses, next_batch_guess
from autoaccel.states import Bound
from tests.fake_nvml import FakeNvml


def test_diagnosis_thresholds() -> None:
    class Space:
        class memory:
            budget_bytes = 1000

    waiting = Measurement(outcome="ok", data_wait_s=0.3, compute_s=0.7)
    busy = Measurement(outcome="ok", data_wait_s=0.1, compute_s=0.9)
    full = Measurement(outcome="ok", data_wait_s=0.1, compute_s=0.9, peak_memory_bytes=900)
    assert diagnose(waiting, Space).bound == "input"  # type: ignore[arg-type]
    assert diagnose(busy, Space).bound == "compute"  # type: ignore[arg-type]
    assert diagnose(full, Space).bound == "memory"  # type: ignore[arg-type]
    assert "input-bound at >= 20%" in str(diagnose(busy, Space))  # type: ignore[arg-type]
    assert isinstance(diagnose(busy, Space), Diagnosis)  # type: ignore[arg-type]


def _cpu_space(
    flags: tuple[str, ...], fixed: dict[str, str] | None = None
) -> tuple[SearchSpace, TrainingConfig, HardwareProfile]:
    profile = probe_system(nvml=FakeNvml([]), light=True)
    profile = replace(profile, cpu=replace(profile.cpu, flags=flags, usable_cores=2))
    user = TrainingConfig(batch_size=32, lr=0.05)
    space = build_space(
        profile,
        user,
        dataset_size=4096,
        device=torch.device("cpu"),
        conv_model=True,
        tensor_data=False,
        baseline_memory_bytes=None,
        include_parallel=True,
        optimizer="SGD",
        fixed=fixed,
    )
    return space, user, profile


def test_the_guesses_go_from_your_steps_to_larger_ones_one_size_at_a_time() -> None:
    """Your steps with the speed-only knobs first, then your batch in bf16 (native here),
    then the next batch size up, which the trials' curves can clear, before the 8x batch."""
    space, user, profile = _cpu_space(("avx2", "avx512_bf16"))
    found = guesses(space, user, Diagnosis(Bound.COMPUTE, 0.1, None, 0, ()), profile)
    steps = [(g.batch_size * g.processes, g.precision) for g in found]
    bf16 = "bf16-mixed"
    assert steps[:4] == [(32, "32-true"), (32, bf16), (32, bf16), (64, bf16)]
    assert found[0].channels_last and found[0].num_threads == 2  # speed only: your steps
    assert found[2].processes == 2  # your bf16 batch split over two processes
    assert found[3].channels_last and found[3].processes == 1
    assert steps[4] == (256, "bf16-mixed")  # then the 8x batch
    assert len({tuple(sorted(space.params_of(g).items())) for g in found}) == len(found)


def test_where_you_train_at_bf16_your_batch_at_32_true_is_the_next_guess() -> None:
    """bf16 trains the HF example at 0.86x of 32-true on this CPU (one tune's trials 0 and
    1); launched at bf16 (an Accelerate config's), no guess tried 32-true, and all seven
    trials of a 2m tune stayed at bf16."""
    space, user, profile = _cpu_space(("avx2", "avx512_bf16"))
    user = replace(user, precision="bf16-mixed")
    found = guesses(space, user, Diagnosis(Bound.COMPUTE, 0.1, None, 0, ()), profile)
    steps = [(g.batch_size * g.processes, g.precision) for g in found]
    assert steps[:2] == [(32, "bf16-mixed"), (32, "32-true")]
    assert found[1].channels_last == found[0].channels_last  # only the precision differs
    assert steps.count((32, "32-true")) == 1


def test_without_native_bf16_the_next_batch_up_keeps_your_precision() -> None:
    space, user, profile = _cpu_space(("avx2",))
    found = guesses(space, user, Diagnosis(Bound.COMPUTE, 0.1, None, 0, ()), profile)
    steps = [(g.batch_size * g.processes, g.precision) for g in found]
    assert steps[:3] == [(32, "32-true"), (64, "32-true"), (256, "32-true")]
    assert next_batch_guess(space, replace(user, batch_size=2048)) is None  # the grid's top


def test_the_guesses_keep_what_your_script_pins() -> None:
    """A knob the script pins is not searched: a DeepSpeed config's micro-batch and
    precision (HF's TrainingArguments(deepspeed=...)), a Lightning Trainer's precision.
    The guesses looked up the batch size and precision knobs all the same, and the tune
    stopped with an internal error (KeyError: 'batch_size') after its baseline."""
    pinned = {"batch_size": "your DeepSpeed config sets it", "precision": "Trainer(precision)"}
    space, user, profile = _cpu_space(("avx2", "avx512_bf16"), fixed=pinned)
    assert "batch_size" not in space.names and "precision" not in space.names
    found = guesses(space, user, Diagnosis(Bound.INPUT, 0.3, None, 0, ()), profile)
    assert found and {(g.batch_size, g.processes, g.precision) for g in found} == {
        (32, 1, "32-true")
    }
    assert found[0].channels_last and any(g.num_workers > 0 for g in found)
    assert next_batch_guess(space, user) is None
