"""Recommendations with their evidence (pure functions of what was measured).

Each tuned knob is backed, where the search measured it, by a pair of trials that differ in
that knob alone; knobs kept as they were are backed by the best alternative tried. Advice
that was not measured (gradient checkpointing, transfer learning, early stopping, pruning /
quantization / distillation, the LR scaling rule) is labelled so.
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Any

from autoaccel.advice.types import Recommendation
from autoaccel.config import TrainingConfig
from autoaccel.schedule import lr_multiplier, scaling_rule
from autoaccel.search import PRUNE_BELOW, Diagnosis, SearchResult, TrialRecord, WorkloadFacts
from autoaccel.states import Bound, Outcome
from autoaccel.time_to_loss.shapes import split_words

__all__ = ["lr_follows_batch", "recommendations"]

FLAT_LOSS = 0.01  # the baseline's training loss changed by less than this: flattened
BIG_MODEL = 10_000_000  # parameters from which compression is worth a mention


def recommendations(
    result: SearchResult, diagnosis: Diagnosis, facts: WorkloadFacts, keep_global_batch: bool
) -> list[Recommendation]:
    """What to change, each with its measured evidence, then unmeasured advice."""
    # One-knob evidence compares trials of the search itself: the best as it was measured
    # then, not its final-round median (taken later, on a machine that may have drifted).
    best = next((r for r in result.records if r.number == result.best.number), result.best)
    return [
        *_changed(result, best),
        *_kept(result, best),
        *_batch_changed(result, best, keep_global_batch),
        *_unmeasured(result, diagnosis, facts),
    ]


def _changed(result: SearchResult, best: TrialRecord) -> list[Recommendation]:
    """Each knob the best changed, with the trial that differs from it in that knob alone."""
    recs = []
    base = result.baseline
    for knob, value in best.params.items():
        old = base.params[knob]
        if value == old:
            continue
        other = _one_knob_pair(result.records, best, knob, old)
        kept = best.config.global_batch == base.config.global_batch
        if knob == "batch_size" and kept:  # set by the processes (or accumulation) it runs in
            evidence = (
                f"per process: {split_words(best.config)} ({best.config.global_batch}) = your "
                "global batch, kept"
            )
        elif other is not None:
            evidence = _compare(knob, old, value, other, best)
        else:
            evidence = (
                f"chosen together with other changes: the best ({_named(best)}) "
                f"ran {best.value / max(base.value, 1e-9):.2f}x the baseline"
            )
        recs.append(Recommendation(f"set {knob} = {value} (was {old})", evidence, True, knob))
    return recs


def _kept(result: SearchResult, best: TrialRecord) -> list[Recommendation]:
    """Each knob the best kept, with the best alternative tried, all else equal."""
    recs = []
    for knob, value in best.params.items():
        if value != result.baseline.params[knob]:
            continue
        others = {k: v for k, v in best.params.items() if k != knob}
        tried = [
            r
            for r in result.records
            if _compared(r)
            and r.params[knob] != value
            and {k: v for k, v in r.params.items() if k != knob} == others
        ]
        if tried:
            alt = max(tried, key=lambda r: r.value)
            evidence = _compare(knob, value, alt.params[knob], best, alt)
            recs.append(Recommendation(f"keep {knob} = {value}", evidence, True, knob))
    return recs


def _batch_changed(
    result: SearchResult, best: TrialRecord, keep_global_batch: bool
) -> list[Recommendation]:
    """A changed batch without an LR of its own: the LR must follow (said, not measured)."""
    if "batch_size" not in best.params:
        return []
    old, new = result.baseline.config.global_batch, best.config.global_batch
    if old == new or keep_global_batch:
        return []
    return [
        Recommendation(
            f"the global batch changed {new / old:g}x: scale the learning rate with it (linear for "
            "SGD, square root for Adam) and warm it up, or tune with --keep-global-batch "
            "(advise(keep_global_batch=True))",
            "a larger batch takes fewer, larger steps; throughput alone does not show how "
            "fast the model learns",
            False,
            "lr",
        )
    ]


def _unmeasured(
    result: SearchResult, diagnosis: Diagnosis, facts: WorkloadFacts
) -> list[Recommendation]:
    """The techniques the evidence points to but the search does not measure."""
    recs = []
    failures = [r for r in result.records if r.measurement.outcome is Outcome.OOM]
    if diagnosis.bound is Bound.MEMORY or failures:
        where = (
            f"batch {min(r.config.batch_size for r in failures)} ran out of memory"
            if failures
            else f"peak memory is {diagnosis.peak_memory_bytes} bytes"
        )
        text = (
            "gradient checkpointing (torch.utils.checkpoint) trades compute for memory to fit "
            "larger batches"
        )
        recs.append(Recommendation(text, where, False))
    params, samples = facts.parameter_count, facts.dataset_size
    if samples and params > 1_000_000 and samples < 20 * params / 1000:
        text = (
            "with this little data for this model, start from a pretrained model (transfer "
            "learning) and fine-tune"
        )
        recs.append(Recommendation(text, f"{params:,} parameters for {samples:,} samples", False))
    flattened = _flat_loss(result.baseline.measurement.losses)
    if flattened:
        text = "the training loss has flattened: use early stopping on a validation metric"
        recs.append(Recommendation(text, flattened, False))
    if params >= BIG_MODEL:
        text = (
            "for deployment, consider pruning, quantization (torch.ao.quantization) or "
            "distillation into a smaller model"
        )
        recs.append(Recommendation(text, f"{params:,} parameters", False))
    return recs


def _flat_loss(losses: tuple[float, ...]) -> str | None:
    """Evidence that the baseline's training loss stopped falling, or None."""
    if len(losses) < 30:
        return None
    third = len(losses) // 3
    first, last = statistics.fmean(losses[:third]), statistics.fmean(losses[-third:])
    if first > 0 and abs(first - last) / first < FLAT_LOSS:
        return f"mean loss {first:.4g} -> {last:.4g} across the baseline run (< 1% change)"
    return None


def _named(record: TrialRecord) -> str:
    """'trial 7', or what a record measured outside the search is."""
    if record.number >= 0:
        return f"trial {record.number}"
    return "the pick at your global batch, measured after the search"


def _compared(record: TrialRecord) -> bool:
    """A trial with a throughput to compare: measured, or stopped early as slower."""
    return record.measurement.outcome in (Outcome.OK, Outcome.PRUNED)


def _one_knob_pair(
    records: list[TrialRecord], best: TrialRecord, knob: str, value: Any
) -> TrialRecord | None:
    """A trial equal to ``best`` except ``knob`` = ``value`` (measured, or stopped early)."""
    target = {**best.params, knob: value}
    return next((r for r in records if r.params == target and _compared(r)), None)


def _compare(knob: str, old: Any, new: Any, before: TrialRecord, after: TrialRecord) -> str:
    """Evidence text for one knob changed between two trials, all else equal."""
    trials = f"(trial {before.number} vs {after.number}, all else equal)"
    if min(before.number, after.number) < 0:
        trials = f"({_named(before)} vs {_named(after)}, all else equal)"
    early = [r for r in (before, after) if r.measurement.outcome is Outcome.PRUNED]
    rate_before = before.measurement.samples_per_s
    rate_after = after.measurement.samples_per_s
    if rate_before <= 0 or rate_after <= 0:
        return f"{knob} {old} -> {new}: no throughput to compare {trials}"
    ratio = f"{rate_after / rate_before:.2f}x samples/s"
    if early:
        ratio = (
            f"about {ratio} (trial {early[0].number} stopped early, under "
            f"{PRUNE_BELOW:.0%} of the best)"
        )
    return f"{knob} {old} -> {new}: {ratio} {trials}"


def lr_follows_batch(
    config: TrainingConfig, user: TrainingConfig, facts: WorkloadFacts
) -> tuple[TrainingConfig, Recommendation | None]:
    """A changed global batch gets the optimizer family's LR scaling rule and a warm-up;
    not where the script steps a scheduler it did not give ``prepare()`` (that sets the LR
    from its own copy) or holds the LR itself (``facts.fixed``: a DeepSpeed config's): the
    recommendation says how to let the LR follow."""
    if config.global_batch == user.global_batch or config.lr is not None:
        return config, None
    batches = f"{user.global_batch} -> {config.global_batch}"
    held = None  # what to do, and why no rule is written, where the script sets the LR
    if facts.unpassed_scheduler:
        held = (
            "pass your LR scheduler to prepare(..., scheduler=...) and tune again, so the LR "
            f"can follow the global batch ({batches})",
            "your script makes a scheduler that prepare() is not given: it sets the LR at "
            "each step",
        )
    elif "lr" in facts.fixed:
        held = (
            f"let the LR follow the global batch ({batches}) and tune again: {facts.fixed['lr']}",
            "your script holds the LR",
        )
    if held is not None:
        text, why = held
        why += ", so no scaling rule is written (the pick's trials trained your LR)"
        return config, Recommendation(text, why, False, "lr_scaling")
    rule, why = scaling_rule(facts.optimizer or "unknown")
    if facts.dataset_size:  # one epoch of warm-up, within reason
        warmup = min(max(facts.dataset_size // config.global_batch, 10), 500)
    else:
        warmup = 100
    warmup = max(warmup, config.warmup_steps)
    factor = lr_multiplier(rule, user.global_batch, config.global_batch)
    scaled = replace(config, lr_scaling=rule, warmup_steps=warmup)
    return scaled, Recommendation(
        f"scale the LR x{factor:.3g} ({rule} rule) with {warmup} warm-up steps: the global "
        f"batch goes {user.global_batch} -> {config.global_batch}",
        f"{why}; prepare() applies it to every param group (lr_scaling: {rule}, not measured "
        "for convergence unless objective='time-to-loss')",
        False,
        "lr_scaling",
    )
