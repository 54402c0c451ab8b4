"""What the throughput search hands the schedule study."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import pytest
from rich.console import Console
from search.test_heuristics import _cpu_space as cpu_space

from autoaccel.config import Provenance, TrainingConfig
from autoaccel.measure import Measurement
from autoaccel.pipeline.schedule import rates_by_batch, settings_by_batch
from autoaccel.progress import say
from autoaccel.record import run_record
from autoaccel.report import render_report
from autoaccel.search import TrialRecord
from autoaccel.time_to_loss.shapes import at_global


def record(n: int, rate: float, outcome: str = "ok", **knobs: object) -> TrialRecord:
    """A throughput trial's record: its config and its measured samples/s."""
    config = TrainingConfig(**knobs)  # type: ignore[arg-type]
    return TrialRecord(n, {}, config, Measurement(outcome=outcome, samples_per_s=rate), "x")


def test_each_batch_size_trains_with_the_cpu_split_measured_fastest_at_it() -> None:
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


def test_a_small_batch_trains_in_the_processes_measured_fastest_at_it() -> None:
    """Two DDP processes won at 2 x 512; at global batch 32 one process was faster, so a
    global-batch-32 schedule candidate trains in one (not in two at 64, its LR moved)."""

    ddp = {"strategy": "ddp", "processes": 2, "num_threads": 1}
    records = [
        record(0, 1429.0, batch_size=32, num_threads=2),
        record(1, 2423.0, batch_size=512, **ddp),
        record(2, 1783.0, batch_size=128, **ddp),
    ]
    system = TrainingConfig(batch_size=512, **ddp)  # type: ignore[arg-type]
    settings = settings_by_batch(records, system)  # by global batch
    assert (settings[32].processes, settings[32].strategy, settings[32].num_threads) == (
        1,
        "none",
        2,
    )
    assert settings[32].global_batch == 32
    assert settings[256].processes == 2 and settings[256].batch_size == 128
    assert settings[1024] == system
    # A global batch that was not measured: the nearest one's split, the per-process batch
    # following it; one process where the split does not divide it.
    assert (at_global(settings, 512).processes, at_global(settings, 512).batch_size) == (2, 256)
    assert at_global(settings, 16) == replace(settings[32], batch_size=16)
    odd = at_global(settings, 255)
    assert (odd.processes, odd.strategy, odd.batch_size, odd.global_batch) == (1, "none", 255, 255)


def test_a_small_batch_trains_in_the_precision_measured_fastest_at_it() -> None:
    """The HF example's tune: bf16 won at 2 processes x 512 and ran 0.81x fp32 at your batch
    32 (972 against 1,197 samples/s). A global-batch-32 schedule candidate trains in fp32,
    its steps sized from fp32's rate; batch 1024 keeps the pick's bf16."""
    ddp = {"strategy": "ddp", "processes": 2, "num_threads": 1, "precision": "bf16-mixed"}
    records = [
        record(0, 1197.0, batch_size=32, num_threads=2),
        record(1, 972.0, batch_size=32, num_threads=2, precision="bf16-mixed"),
        record(2, 2460.0, batch_size=512, **ddp),
    ]
    system = TrainingConfig(batch_size=512, **ddp)  # type: ignore[arg-type]
    settings = settings_by_batch(records, system)
    assert (settings[32].precision, settings[32].processes) == ("32-true", 1)
    assert settings[1024] == system
    assert rates_by_batch(records, system) == {32: 1197.0, 1024: 2460.0}


@pytest.mark.parametrize("rounds", [1, 2])
def test_the_final_study_ranks_finalists_as_the_final_round_does(rounds: int) -> None:
    """A lucky single measurement tops the search study; the final round's medians pick
    the steady config, and the final study (valued by those medians) agrees with it. With
    one round too: the lucky search trial is not counted, or (1000 + 400) / 2 would win."""
    import statistics

    from autoaccel.confirm import final_round
    from autoaccel.pipeline.run import EndPhase, ranked_finalists
    from autoaccel.search import SearchResult

    def record(n: int, rate: float, batch: int) -> TrialRecord:
        config = TrainingConfig(batch_size=batch)
        m = Measurement(outcome="ok", samples_per_s=rate)
        return TrialRecord(n, {"batch_size": batch}, config, m, "sampler")

    lucky, steady, slow = record(1, 1000.0, 64), record(2, 600.0, 128), record(3, 300.0, 32)
    again = {64: [400.0, 400.0], 128: [600.0, 600.0], 32: [300.0, 300.0]}
    replay = {k: iter(v) for k, v in again.items()}

    def measure(config: TrainingConfig, prune: object = None) -> Measurement:
        rate = next(replay[config.batch_size])
        return Measurement(outcome="ok", samples_per_s=rate)

    records = [lucky, steady, slow]
    end = EndPhase(measure, records, "final round")
    winner, _ = final_round(end, records, rounds=rounds)
    assert winner.params == {"batch_size": 128}
    result = SearchResult(records, slow, winner, "done", 1.0, "s", "sqlite://", 3, 3)
    ranked = {p["batch_size"]: statistics.median(r) for p, r in ranked_finalists(result, end)}
    assert ranked == {64: 400.0, 128: 600.0, 32: 300.0}
    assert max(ranked, key=ranked.__getitem__) == winner.params["batch_size"]


def test_rates_by_batch_are_those_of_the_settings_each_batch_trains_with() -> None:
    """At batch 32 the candidate trains in one process (the fastest there), so its steps are
    sized from that trial's rate, not from the two-process trials nearest in batch."""
    ddp = {"strategy": "ddp", "processes": 2, "num_threads": 1}
    records = [
        record(0, 1429.0, batch_size=32, num_threads=2),
        record(1, 2423.0, batch_size=512, **ddp),
        record(2, 1783.0, batch_size=128, **ddp),
        record(3, 9999.0, batch_size=64, channels_last=True),  # another model-side setting
    ]
    system = TrainingConfig(batch_size=512, **ddp)  # type: ignore[arg-type]
    assert rates_by_batch(records, system) == {32: 1429.0, 256: 1783.0, 1024: 2423.0}


def studied(baseline: Any, best: Any, levels: list[Any], horizon_s: float) -> Any:
    """A schedule study's result: ``best`` of your setup and one candidate."""
    from autoaccel.time_to_loss import ConvergenceResult

    runs = [best] if best is not baseline else []
    return ConvergenceResult(
        baseline=baseline,
        best=best,
        runs=runs,
        finding=None,
        rule="sqrt",
        rule_reason="AdamW is Adam-family",
        horizon_s=horizon_s,
        holdout="the validation set",
        study_name="s",
        stop_reason="budget",
        levels=levels,
        aim="your setup's held-out losses",
    )


def test_the_schedule_picks_split_replaces_the_throughput_evidence_for_it() -> None:
    """The throughput pick ran 2 processes x 256; the schedule study's pick trains at global
    batch 32 in one process. The config's comments must not credit the 2-process trial for
    batch 32 and one process; what both keep (precision) keeps its evidence."""
    from autoaccel.advice.convergence import with_convergence
    from autoaccel.advice.types import Advice
    from autoaccel.curves import CurvePoint, Level, LossRun
    from autoaccel.states import Outcome

    measured = "chosen together with other changes: the best trial (6) ran 1.59x the baseline"
    evidence = {k: measured for k in ("batch_size", "processes", "num_threads", "precision")}
    tuned = TrainingConfig(
        batch_size=256,
        strategy="ddp",
        processes=2,
        num_threads=1,
        precision="bf16-mixed",
        provenance=Provenance(evidence=evidence),
    )
    user = TrainingConfig(batch_size=32, num_threads=2)
    pick = replace(tuned, batch_size=32, strategy="none", processes=1, num_threads=2, lr=0.004)
    curve = (CurvePoint(1.0, 30, 1.3, 0.34),)
    baseline = LossRun(user, Outcome.OK, curve=curve, pace=1.0, label="your setup")
    best = LossRun(pick, Outcome.OK, curve=curve, pace=0.5, number=8)
    converged = studied(baseline, best, [Level(0.33, 2.0, metric=True, higher=True)], 30.0)
    # with_convergence reads the advice's config, recommendations and notes only.
    advice = Advice(tuned, *([None] * 4), [], *([None] * 3))  # type: ignore[arg-type]
    config = with_convergence(advice, converged, user, wall_s=1.0).config
    assert (config.batch_size, config.processes, config.num_threads) == (32, 1, 2)
    for knob in ("batch_size", "processes", "num_threads"):
        assert config.provenance.evidence[knob].startswith("the schedule study's pick"), knob
    assert config.provenance.evidence["precision"] == measured


def test_progress_lines_print_error_text_verbatim() -> None:
    # A failed trial's reason can quote gloo ("[enforce fail at /__w/.../pair.cc:553]"): as
    # rich markup that raised MarkupError and ended a tune run as an internal error (CI).
    out = io.StringIO()
    console = Console(file=out, width=200)
    text = "it failed ([enforce fail at /__w/pytorch/gloo/pair.cc:553] [/x] [bold]closed)"
    say(console, text)
    assert out.getvalue() == f"autoaccel: {text}\n"


def _time_to_loss_advice(kept_yours: bool) -> Any:
    """A time-to-loss tune whose throughput stage picked batch 64 in bf16 (1.23x in pairs)
    and whose schedule study wrote your setup (batch 32 in bf16: the HF example launched at
    bf16) or its own pick at batch 64."""
    from autoaccel.advice.convergence import with_convergence
    from autoaccel.advice.types import Advice
    from autoaccel.confirm import Speedup
    from autoaccel.curves import CurvePoint, Level, LossRun
    from autoaccel.search import Diagnosis, SearchResult
    from autoaccel.states import Bound, Outcome

    user = TrainingConfig(batch_size=32, num_threads=2, precision="bf16-mixed", device="cpu")
    figures = {"samples_per_s": 1830.0, "speedup": 1.23, "speedup_min": 1.23, "speedup_max": 1.23}
    pick = replace(user, batch_size=64, provenance=Provenance(measured=figures))
    space, _, profile = cpu_space(("avx2", "avx512_bf16"))
    yours, best = record(0, 1488.0, **user.knobs()), record(5, 1877.0, **pick.knobs())
    search = SearchResult([yours, best], yours, best, "budget", 60.0, "s", "x.db", 2, 100)
    speedup = Speedup((1.23,), (1488.0,), (1830.0,))
    diagnosis = Diagnosis(Bound.COMPUTE, 0.03, None, 1 << 30, ())
    measured = (yours.measurement, best.measurement)
    advice = Advice(pick, *measured, speedup, diagnosis, [], profile, search, space)
    curve = (CurvePoint(8.3, 400, 0.3672, None),)
    baseline = LossRun(user, Outcome.OK, curve=curve, pace=1.0, label="your setup")
    theirs = LossRun(replace(pick, lr=0.001), Outcome.OK, curve=curve, pace=0.8, number=3)
    converged = studied(baseline, baseline if kept_yours else theirs, [Level(0.3672, 8.3)], 8.0)
    return with_convergence(advice, converged, user, wall_s=100.0)


@pytest.mark.parametrize("kept_yours", [True, False])
def test_a_throughput_pick_the_schedule_study_did_not_write_is_not_called_tuned(
    kept_yours: bool,
) -> None:
    """The HF example launched at bf16, tuned for time to loss: the table said "tuned:
    batch 64, 1,877 samples/s, speedup 1.23x" while the schedule study wrote your setup
    (batch 32). The figures are the throughput stage's pick's, and the table says it was
    not written; where the study's pick keeps those settings, they are the tuned ones."""
    advice = _time_to_loss_advice(kept_yours)
    text = " ".join(advice.summary(width=300).split())  # titles wrap at the table's width
    data = advice.to_dict()
    if kept_yours:
        assert advice.config.batch_size == 32
        assert (
            "the throughput stage's pick, by samples/s; not written: the schedule study "
            "below wrote your setup" in text
        )
        assert "1.23x (min 1.23, max 1.23, 1 pairs), not the written setup's" in text
        assert data["speedup"]["of_written"] is False
        measured = advice.config.provenance.measured  # the written file's own figures
        assert "speedup" not in measured and "samples_per_s" not in measured
        html = render_report(run_record(advice, kind="tune", command="tune", storage=None))
        assert "The throughput stage's pick ran <b>1.23x</b>" in html
        assert "Tuned vs. baseline" not in html
        assert "Paired speedup of the throughput pick (not written): median" in html
    else:
        assert advice.config.batch_size == 64
        assert "not written" not in text and "system settings, by samples/s" in text
        assert data["speedup"]["of_written"] is True
        assert advice.config.provenance.measured["speedup"] == 1.23
