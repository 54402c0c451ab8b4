from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from models import FAST, Pairs, TinyConv, mlp, tabular
from torch import nn

from autoaccel.config import TrainingConfig, load_config
from autoaccel.confirm import confirm, final_round
from autoaccel.errors import DataError, UsageError
from autoaccel.frontends.advise import advise
from autoaccel.measure import Measurement
from autoaccel.pipeline import settings_by_batch
from autoaccel.search import Diagnosis, TrialRecord, diagnose


def test_advise_finds_a_faster_setup_and_leaves_the_caller_untouched(tmp_path: Path) -> None:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = tabular(2048)
    loss = nn.functional.cross_entropy(model(x[:8]), y[:8])
    loss.backward()
    optimizer.step()  # the caller's optimizer has state worth protecting
    params = {k: v.clone() for k, v in model.state_dict().items()}
    momentum = {id(p): optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()}
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(7)
    torch_rng, py_rng, np_rng = torch.get_rng_state(), random.getstate(), np.random.get_state()

    advice = advise(
        model,
        (x, y),
        optimizer=optimizer,
        budget_s=40,
        max_trials=6,
        storage=str(tmp_path / "s.db"),
        settings=FAST,
        progress=False,
        seed=0,
    )

    for k, v in model.state_dict().items():
        assert torch.equal(v, params[k]), k
    for p in model.parameters():
        assert torch.equal(optimizer.state[p]["momentum_buffer"], momentum[id(p)])
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), torch_rng)
    assert random.getstate() == py_rng
    assert np.array_equal(np.random.get_state()[1], np_rng[1])

    assert advice.baseline.ok and advice.best.ok
    assert advice.best.samples_per_s >= advice.baseline.samples_per_s
    assert len(advice.speedup.ratios) == 3
    assert advice.speedup.min <= advice.speedup.median <= advice.speedup.max
    assert advice.diagnosis.bound in ("input", "compute", "memory")
    assert advice.config.provenance.measured["speedup"] == round(advice.speedup.median, 3)
    assert advice.search.trials_measured <= 6
    if advice.config.global_batch != advice.search.baseline.config.global_batch:
        # SGD: the LR follows the batch linearly, with a warm-up, and the config says so
        assert advice.config.lr_scaling == "linear" and advice.config.warmup_steps >= 10
        assert "SGD is SGD-family" in advice.config.provenance.evidence["lr_scaling"]
    text = advice.summary()
    assert "samples/s" in text and "speedup (paired)" in text and "Recommendations" in text
    path = advice.save(tmp_path / "autoaccel.yaml")
    assert load_config(path) == advice.config


def test_each_recommendation_is_labelled(tmp_path: Path) -> None:
    advice = advise(
        mlp(),
        tabular(2048),
        budget_s=30,
        max_trials=5,
        settings=FAST,
        progress=False,
        storage=str(tmp_path / "s.db"),
        seed=1,
    )
    for rec in advice.recommendations:
        assert str(rec).endswith("]")
        assert ("[measured: " in str(rec)) == rec.measured
    changed = [r for r in advice.recommendations if r.measured and r.text.startswith("set ")]
    for rec in changed:
        assert "x samples/s" in rec.evidence or "ran" in rec.evidence


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


def test_confirm_interleaves_and_pairs() -> None:
    order: list[str] = []

    def measure(config: object) -> Measurement:
        name = "A" if config == "base" else "B"
        order.append(name)
        drift = 1 + 0.1 * len(order)  # the machine slows down over time
        rate = (100 if name == "A" else 200) / drift
        return Measurement(outcome="ok", samples_per_s=rate)

    speedup = confirm(measure, "base", "best", pairs=3)  # type: ignore[arg-type]
    assert order == ["A", "B", "A", "B", "A", "B"]
    assert speedup.median == pytest.approx(2 * (1 + 0.1 * 3) / (1 + 0.1 * 4))


def test_the_final_round_keeps_the_best_median_not_the_lucky_trial() -> None:
    """Trial 1 was measured once in a quiet moment; re-measured, trial 2 is faster."""
    true_rate = {16: 90.0, 32: 99.0, 64: 85.0, 128: 60.0}
    first = {16: 120.0, 32: 100.0, 64: 95.0, 128: 0.0}
    records = [
        TrialRecord(
            n,
            {},
            TrainingConfig(batch_size=b),
            Measurement(outcome="ok" if b != 128 else "oom", samples_per_s=first[b], message=""),
            "sampler",
        )
        for n, b in enumerate(true_rate, start=1)
    ]
    order: list[int] = []

    def measure(config: TrainingConfig) -> Measurement:
        order.append(config.batch_size)
        return Measurement(outcome="ok", samples_per_s=true_rate[config.batch_size])

    winner, evidence = final_round(measure, records, finalists=3, rounds=2)
    assert order == [16, 32, 64, 16, 32, 64]  # in turn; the failed config is not a finalist
    assert winner.number == 2 and winner.measurement.samples_per_s == 99.0
    assert evidence is not None and "trial 2 kept" in evidence
    alone, none = final_round(measure, records[:1])
    assert alone is records[0] and none is None
    order.clear()
    capped, none = final_round(measure, records, finalists=3, rounds=2, max_measurements=5)
    assert order == [16, 32, 64]  # 5 trials left: one round fits
    assert capped.number == 1  # one round cannot outvote the lucky 120: (120 + 90) / 2
    order.clear()
    assert final_round(measure, records, max_measurements=2)[1] is None and not order


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            dict(data=(torch.zeros(0, 16), torch.zeros(0, dtype=torch.long))),
            DataError,
            "the dataset is empty",
        ),
        (
            dict(data=(torch.randn(64, 10), torch.zeros(64, dtype=torch.long))),
            DataError,
            r"model\(\*inputs\) failed for batch shapes \[\(4, 10\), \(4,\)\]",
        ),
        (
            dict(data=(torch.randn(64, 16), torch.randn(64, 4))),
            DataError,
            "cannot tell which loss to use",
        ),
        (
            dict(data=tabular(), budget_s=2),
            UsageError,
            r"budget_s=2 is too small for even one "
            r"trial",
        ),
        (
            dict(
                data=(
                    torch.randn(8, 16, device="meta"),
                    torch.zeros(8, dtype=torch.long, device="meta"),
                )
            ),
            DataError,
            "the data is on meta but the model is on cpu",
        ),
        (dict(data=tabular(), max_trials=0), UsageError, "max_trials must be >= 1, got 0"),
    ],
)
def test_bad_input_fails_before_any_search(
    tmp_path: Path, kwargs: dict[str, object], error: type, match: str
) -> None:
    storage = tmp_path / "never.db"
    with pytest.raises(error, match=match):
        advise(mlp(), storage=str(storage), progress=False, **kwargs)  # type: ignore[arg-type]
    assert not storage.exists()


def test_a_conv_model_on_a_dataset(tmp_path: Path) -> None:
    advice = advise(
        TinyConv(),
        Pairs(256),
        loader_kwargs={"batch_size": 16, "shuffle": True},
        budget_s=30,
        max_trials=4,
        storage=str(tmp_path / "s.db"),
        settings=FAST,
        progress=False,
    )
    assert "channels_last" in advice.space.names
    assert "batch_fetch" not in advice.space.names
    assert advice.search.baseline.config.batch_size == 16


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
