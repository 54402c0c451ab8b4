"""What the throughput search hands the schedule study."""

from __future__ import annotations

from dataclasses import replace

from autoaccel.config import TrainingConfig
from autoaccel.measure import Measurement
from autoaccel.pipeline import settings_by_batch
from autoaccel.search import TrialRecord


def test_each_batch_size_trains_with_the_cpu_split_measured_fastest_at_it() -> None:
    def record(n: int, rate: float, outcome: str = "ok", **knobs: object) -> TrialRecord:
        config = TrainingConfig(**knobs)  # type: ignore[arg-type]
        return TrialRecord(n, {}, config, Measurement(outcome=outcome, samples_per_s=rate), "x")

    records = [
        record(0, 100.0, batch_size=32, num_workers=0, num_threads=2),
        record(1, 90.0, batch_size=32, num_workers=2, persistent_workers=True),
        record(2, 500.0, batch_size=32, num_workers=1, outcome="oom"),  # failed: not a pick
        record(3, 400.0, batch_size=256, num_workers=2, channels_last=True),
        record(4, 410.0, batch_size=256, num_workers=1),  # a lucky single measurement
    ]
    system = TrainingConfig(
        batch_size=256,
        num_threads=1,
        num_workers=2,
        persistent_workers=True,
        channels_last=True,
        lr_scaling="sqrt",
        warmup_steps=14,
    )
    settings = settings_by_batch(records, system)
    # Batch 32: the threads and loader of its fastest trial, the model-side settings of the
    # pick (a measured CNN run: 1 thread + 2 workers won at 256; at 32 it halved the speed).
    assert settings[32] == replace(
        system,
        batch_size=32,
        num_threads=2,
        num_workers=0,
        persistent_workers=False,
        lr_scaling="none",
        warmup_steps=0,
    )
    # The throughput pick (after its final round) stands for its own batch size, and the
    # batch-size rule's warm-up is the schedule study's to choose.
    assert settings[256] == replace(system, lr_scaling="none", warmup_steps=0)
