"""The evidence behind each recommendation, for a pick that keeps your global batch in two
processes: the situation of the README's main job on a 2-core machine (the convergence
check kept the global batch 32 as 2 processes x 16, measured outside the search)."""

from __future__ import annotations

from dataclasses import replace

import torch

from autoaccel.advice.evidence import lr_follows_batch, recommendations
from autoaccel.config import TrainingConfig
from autoaccel.measure import Measurement
from autoaccel.schedule import sets_lr
from autoaccel.search import Diagnosis, SearchResult, TrialRecord, WorkloadFacts
from autoaccel.states import Bound

KNOBS = ("batch_size", "num_threads", "processes", "device")


def record(n: int, rate: float, source: str = "sampler", **knobs: object) -> TrialRecord:
    config = TrainingConfig(**knobs)  # type: ignore[arg-type]
    params = {k: getattr(config, k) for k in KNOBS}
    return TrialRecord(n, params, config, Measurement(outcome="ok", samples_per_s=rate), source)


def advice_for(best: TrialRecord, records: list[TrialRecord]) -> dict[str, str]:
    result = SearchResult(
        records=records,
        baseline=records[0],
        best=best,
        stop_reason="budget",
        wall_s=60.0,
        study_name="s",
        storage="x.db",
        trials_measured=len(records),
        grid_size=100,
    )
    diagnosis = Diagnosis(Bound.COMPUTE, 0.1, None, 1 << 30, ())
    facts = WorkloadFacts("Net", 10_000, 4096, True, False, torch.device("cpu"), 3.0, "SGD")
    recs = recommendations(result, diagnosis, facts, keep_global_batch=False)
    return {r.text: r.evidence for r in recs}


def test_a_pick_that_keeps_your_global_batch_in_two_processes_says_so() -> None:
    ddp = {"strategy": "ddp", "processes": 2, "num_threads": 1}
    baseline = record(0, 1671.0, "baseline", batch_size=32, num_threads=2)
    two_at_32 = record(7, 2805.0, batch_size=32, **ddp)  # global 64
    kept = record(-1, 1944.0, "guard", batch_size=16, **ddp)  # global 32, your own
    advice = advice_for(kept, [baseline, two_at_32, kept])
    # The per-process batch follows from the processes: not "32 -> 16: 0.69x samples/s".
    assert advice["set batch_size = 16 (was 32)"] == (
        "per process: 2 processes x 16 (32) = your global batch, kept"
    )
    # The record measured outside the search is named, not "trial -1".
    assert advice["set processes = 2 (was 1)"] == (
        "chosen together with other changes: the best (the pick at your global batch, "
        "measured after the search) ran 1.16x the baseline"
    )
    # The global batch did not change, so no LR advice for a changed batch.
    assert not [text for text in advice if "batch changed" in text]


def test_a_changed_global_batch_still_gets_the_lr_advice() -> None:
    baseline = record(0, 1000.0, "baseline", batch_size=32, num_threads=2)
    bigger = record(1, 1500.0, batch_size=128, num_threads=2)
    advice = advice_for(bigger, [baseline, bigger])
    assert [text for text in advice if text.startswith("the global batch changed 4x")]
    assert advice["set batch_size = 128 (was 32)"] == (
        "batch_size 32 -> 128: 1.50x samples/s (trial 0 vs 1, all else equal)"
    )


def test_the_device_is_decided_by_a_pair_that_differs_in_it_alone() -> None:
    """A GPU search: your setup on the CPU (the baseline) and the same setup moved to the
    GPU (the first guess) say which device won, and by how much."""
    baseline = record(0, 1_200.0, "baseline", batch_size=32, device="cpu")
    moved = record(1, 30_000.0, "guess", batch_size=32, device="cuda")
    best = record(2, 90_000.0, batch_size=256, device="cuda")
    advice = advice_for(best, [baseline, moved, best])
    assert advice["set device = cuda (was cpu)"] == (
        "chosen together with other changes: the best (trial 2) ran 75.00x the baseline"
    )
    alone = advice_for(moved, [baseline, moved])
    assert alone["set device = cuda (was cpu)"] == (
        "device cpu -> cuda: 25.00x samples/s (trial 0 vs 1, all else equal)"
    )


def test_a_changed_batch_gets_no_lr_rule_where_a_scheduler_prepare_is_not_given_sets_it() -> None:
    """The pick's trials trained the script's LR (its own scheduler sets it at each step),
    and prepare() refuses a config whose LR a hidden scheduler would undo: so no rule is
    written, and the advice says how to let the LR follow the batch."""
    facts = WorkloadFacts("Net", 10_000, 4096, True, False, torch.device("cpu"), 3.0, "SGD")
    user, pick = TrainingConfig(batch_size=32), TrainingConfig(batch_size=128)
    scaled, advice = lr_follows_batch(pick, user, facts)
    assert (scaled.lr_scaling, scaled.warmup_steps) == ("linear", 32)
    assert advice is not None and "x4" in advice.text
    kept, advice = lr_follows_batch(pick, user, replace(facts, unpassed_scheduler=True))
    assert kept == pick and not sets_lr(kept, user)
    assert advice is not None and not advice.measured
    assert advice.text.startswith("pass your LR scheduler to prepare(..., scheduler=...)")


def test_a_changed_batch_gets_no_lr_rule_where_the_script_holds_the_lr() -> None:
    """A DeepSpeed config given to HF's TrainingArguments with an LR of its own holds the
    LR (HF refuses arguments that differ from it): the pick's trials trained it, so no rule
    is written, and the advice names what holds it."""
    held = (
        'your DeepSpeed config sets it (optimizer.params.lr 0.001; "auto" lets autoaccel tune it)'
    )
    facts = WorkloadFacts("Net", 10_000, 4096, True, False, torch.device("cpu"), 3.0, "AdamW")
    user, pick = TrainingConfig(batch_size=32), TrainingConfig(batch_size=128)
    kept, advice = lr_follows_batch(pick, user, replace(facts, fixed={"lr": held}))
    assert kept == pick and not sets_lr(kept, user)
    assert advice is not None and not advice.measured
    assert advice.text == (f"let the LR follow the global batch (32 -> 128) and tune again: {held}")
