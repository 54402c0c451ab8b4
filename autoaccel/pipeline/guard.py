"""The guard stage: the fastest measured setup is written only with evidence that it learns
no worse than your setup; else the next fastest, down to your own.

With the throughput objective, the setups the search measured faster than yours are taken
in order of their search trials' samples/s (of those that can stand, only the final round's
winner, which stands in for its setup):

- one whose steps are yours (``steps_as_yours``: only threads, workers, pinning, prefetch,
  memory format, compilation changed) learns as yours: it is kept, no evidence needed; so
  is your steps at 32-true where yours are bf16 or fp16 (``learns_as_yours``);
- one whose steps differ (batch, split over processes, precision) is checked on its own
  trial's loss curve against your baseline trial's (``curve_verdict``); where those curves
  cannot decide and the budget plan kept time for them, on the guard's own check runs
  (without that time, only when no other faster setup stands, on the time the end
  phases left over, nearest your batch first: ``_batch_distance``)
  (``check_convergence``, the pick as it would be written: its LR rule applied); kept when
  it reached your loss levels no later, else the next one is looked at. A setup whose steps
  are those of one a check run refused is refused on that run, not checked again; one a
  check run would hold fewer than ``MIN_RUN_STEPS`` optimizer steps of gets none
  (``_too_few_steps``).

So a refused pick gives way to the fastest measured setup that passed, never to your own
setup while a faster one was measured and passed. The verdict's line names each refusal and
what decided it.

A pick kept on its trial's curve is written only if no other setup that stands without a
run of its own reaches your levels sooner, by more than ``PACE_MARGIN``
(``soonest_standing``): a setup with your steps learns step for step as yours, so its pace
is its samples/s over yours; one kept on its own trial's curve, that curve's pace. A changed
batch changes what every step learns, and the samples/s it gains can be lost to steps that
learn less (the time-to-accuracy bench's CNN: batch 64 in bf16 ran 1.81x your samples/s but
kept 1.31x your pace, while batch 32 in bf16 ran 1.45x and kept 1.49x; timed to 95%
validation accuracy on 9 data orders by ``bench/batch_or_precision.py``, 1.18x and 1.46x the
default's).
"""

from __future__ import annotations

import math
from dataclasses import replace

from rich.console import Console

from autoaccel.advice import lr_follows_batch
from autoaccel.budget import Budget
from autoaccel.config import TrainingConfig
from autoaccel.confirm import knobs_key, trials_of
from autoaccel.curves import LossRun
from autoaccel.pipeline.options import Job
from autoaccel.pipeline.plan import BudgetPlan
from autoaccel.pipeline.reach import short_of_steps
from autoaccel.progress import say
from autoaccel.search import SearchResult, TrialRecord
from autoaccel.time_to_loss import Trainer
from autoaccel.time_to_loss.guard import (
    GuardVerdict,
    check_convergence,
    guard_horizon_s,
    learns_as_yours,
    steps_as_yours,
)
from autoaccel.time_to_loss.shapes import batch_words
from autoaccel.time_to_loss.trial_curves import curve_verdict

__all__ = [
    "GUARD_PHASE",
    "can_stand",
    "faster_than_yours",
    "guard_pick",
    "search_ratio",
    "soonest_standing",
    "steps_words",
]

GUARD_PHASE = "the convergence check"
SHOWN = 3  # refusals named one by one in the verdict's line; the rest are counted
# How far ahead another standing setup's pace must be to be written in a kept pick's place:
# setups whose steps learn alike read paces a few percent apart on the trials' curves (those
# with your steps read 1.02-1.05x their samples/s ratio on the time-to-accuracy bench's CNN;
# a README job read batch 64 in bf16 at 1.75x your pace and batch 32 in bf16 at 1.77x).
PACE_MARGIN = 0.1


def steps_words(config: TrainingConfig) -> str:
    """'batch 32 (2 processes x 16), bf16-mixed': what decides how a step learns."""
    return f"{batch_words(config)}, {config.precision}"


def faster_than_yours(result: SearchResult) -> list[TrialRecord]:
    """The setups the search measured faster than your baseline, each once at its best
    search trial, fastest first; the final round's winner (``result.best``) stands in for
    its own. Each is ranked against your baseline by its search trial, a single look like
    the baseline's own: not by the final round's median, taken minutes later, when the
    machine may run at another speed (a 2m README job's final round measured its winner
    at half its search speed and dropped it, so your setup was written). Whether the pick
    runs faster than yours is the confirmation's to say, in interleaved pairs."""
    base = result.baseline
    best_key = knobs_key(result.best.config.knobs())
    seen = {knobs_key(base.config.knobs())}
    found = []
    ok = [r for r in result.records if r.measurement.ok and r.value > base.value]
    for record in sorted(ok, key=lambda r: r.value, reverse=True):
        key = knobs_key(record.config.knobs())
        if key not in seen:
            seen.add(key)
            found.append(result.best if key == best_key else record)
    return found


def search_ratio(result: SearchResult, record: TrialRecord) -> float:
    """``record``'s setup against your baseline in the search: its best trial's samples/s
    over the baseline's (0 when the baseline measured none)."""
    rates = [r.value for r in trials_of(result.records, record.config)]
    base = result.baseline.value
    return max(rates, default=record.value) / base if base else 0.0


def can_stand(record: TrialRecord, result: SearchResult, user: TrainingConfig) -> bool:
    """Whether ``record`` has the evidence to be written without check runs: its steps are
    yours, or its trial's loss curve kept pace with your baseline trial's (the final round
    re-measures only these)."""
    if learns_as_yours(record.config, user):
        return True
    return _curve_verdict(record, result, user).kept


def _as_yours(config: TrainingConfig, user: TrainingConfig) -> str:
    """Why a setup that ``learns_as_yours`` needs no evidence."""
    if config.precision == user.precision:
        return "its steps are yours, so it learns as yours"
    return (
        f"its steps are yours at full precision (32-true, the arithmetic your "
        f"{user.precision} approximates), so it learns at least as yours"
    )


def _curve_verdict(record: TrialRecord, result: SearchResult, user: TrainingConfig) -> GuardVerdict:
    """The verdict on ``record``'s setup, from the first trial that measured it: one verdict
    per setup (the final round re-measures its speed, not its curve)."""
    first = next(iter(trials_of(result.records, record.config)), record)
    return curve_verdict(first.measurement, first.config, result.baseline.measurement, user)


def guard_pick(
    job: Job,
    result: SearchResult,
    plan: BudgetPlan,
    budget: Budget,
    console: Console | None,
) -> tuple[SearchResult, GuardVerdict]:
    """The search's result with ``best`` the fastest setup the evidence lets stand, and the
    verdict (``kept``: the fastest measured setup itself stands)."""
    budget.release(GUARD_PHASE)
    user = job.user
    findings: list[str] = []
    check_yours: LossRun | None = None  # your setup's check-run curve, drawn once
    # Setups the trials' curves cannot decide, when the plan kept no time for check runs:
    # checked only if nothing else stands, on the time the end phases left over.
    later: list[tuple[int, TrialRecord, int, str]] = []
    named: dict[str, TrainingConfig] = {}  # the first setup named by each steps' words
    # Check-run refusals: a setup with the same steps learns the same (``steps_as_yours``),
    # so it is refused on that run, not checked again (HF: batch 2048 bf16 with 0 and with
    # 1 loader worker took both check runs of a 3m tune).
    refused: list[tuple[TrainingConfig, GuardVerdict]] = []

    def checked(config: TrainingConfig) -> GuardVerdict | None:
        same = next((v for c, v in refused if steps_as_yours(config, c)), None)
        if same is None:
            return None
        return replace(same, line=f"the same steps as a setup checked above ({same.line})")

    def check(config: TrainingConfig) -> GuardVerdict:
        nonlocal check_yours
        assert job.trainer is not None
        verdict = _check_run(job, job.trainer, config, plan, budget, check_yours, console)
        check_yours = verdict.yours or check_yours
        if not verdict.kept and verdict.how != "unchecked":
            refused.append((config, verdict))
        return verdict

    # The final round re-measured only setups that can stand; its winner goes before them.
    winner = knobs_key(result.best.config.knobs()) if can_stand(result.best, result, user) else None
    for n, candidate in enumerate(faster_than_yours(result)):
        key = knobs_key(candidate.config.knobs())
        if winner not in (None, key) and can_stand(candidate, result, user):
            continue  # it could stand, but the final round put the winner ahead of it
        words = _words_apart(candidate.config, named)
        if learns_as_yours(candidate.config, user):
            line = f"{words}: {_as_yours(candidate.config, user)}"
            return _written(result, candidate, findings, line, n == 0, "unchanged")
        verdict = _curve_verdict(candidate, result, user)
        if verdict.how == "unchecked" and job.trainer is not None:
            few = _too_few_steps(candidate, result.baseline, budget)
            if few is not None:
                verdict = few
            elif not plan.check_runs:
                later.append((n, candidate, len(findings), words))
            else:
                verdict = checked(candidate.config) or check(candidate.config)
        findings.append(f"{words}: {verdict.line}")
        say(console, findings[-1])
        if verdict.kept:
            return _kept(result, user, candidate, findings.pop(), findings, verdict, n, console)
    later.sort(key=lambda entry: (_batch_distance(entry[1].config, user), entry[0]))
    for n, candidate, at, words in later:  # nearest your batch first, while checks fit
        again = checked(candidate.config)
        if again is None and (job.trainer is None or not _check_fits(plan, budget, check_yours)):
            break
        verdict = again or check(candidate.config)
        findings[at] = f"{words}: {verdict.line}"
        say(console, findings[at])
        if verdict.kept:
            line = findings.pop(at)
            return _kept(result, user, candidate, line, findings, verdict, n, console)
    line = "your setup is kept"
    how = "unchecked" if not findings else "guarded"
    if not findings:
        line = "no setup measured here was faster than yours: your setup is kept"
    written, verdict = _written(result, result.baseline, findings, line, False, how)
    say(console, verdict.line.rsplit("; ", 1)[-1])
    return written, verdict


def _words_apart(config: TrainingConfig, named: dict[str, TrainingConfig]) -> str:
    """``steps_words``, and what tells ``config`` apart from the setup named so before it
    (in ``named``), which it joins: setups with the same steps and other loader workers or
    threads are each judged on their own trial, and the line names each (a Lightning run
    named "batch 256 (2 processes x 128), 32-true" twice).

    Example:
        >>> named = {}
        >>> _words_apart(TrainingConfig(batch_size=64), named)
        'batch 64, 32-true'
        >>> _words_apart(TrainingConfig(batch_size=64, num_workers=1), named)
        'batch 64, 32-true (num_workers 1)'
    """
    words = steps_words(config)
    first = named.setdefault(words, config)
    theirs = first.knobs()
    apart = [f"{k} {v}" for k, v in config.knobs().items() if theirs[k] != v]
    return f"{words} ({', '.join(apart)})" if apart else words


def _batch_distance(config: TrainingConfig, user: TrainingConfig) -> float:
    """How far ``config``'s global batch is from yours, on a log scale (0: yours).

    The check runs that only the time left over pays for go to the setups nearest your
    batch first (then the faster first): over the stored benches the guard's own check
    runs refused all 18 setups they checked, every one 8x your batch or more, while the
    trials' curves kept pace for 70 of the 83 setups at 2x your batch (batch 64 against
    32) and for none of the 235 at 8x or more. The time left over buys one check run or
    two; spent on the fastest, it went to a setup that fell behind (a 3m tune of the HF
    example checked batch 256 and left batch 64, 1.39x your samples/s, unchecked: your
    setup was written).

    Example:
        >>> user = TrainingConfig(batch_size=32)
        >>> _batch_distance(TrainingConfig(batch_size=64), user) < _batch_distance(
        ...     TrainingConfig(batch_size=16, processes=2, strategy="ddp", grad_accum_steps=8),
        ...     user)
        True
    """
    return abs(math.log(config.global_batch / user.global_batch))


def _kept(
    result: SearchResult,
    user: TrainingConfig,
    candidate: TrialRecord,
    line: str,
    findings: list[str],
    verdict: GuardVerdict,
    n: int,
    console: Console | None,
) -> tuple[SearchResult, GuardVerdict]:
    """``candidate`` (the ``n``-th fastest; ``line``: its verdict's) kept, unless it was
    kept on its trial's curve and another standing setup reaches your levels sooner
    (``soonest_standing``): then that one is written."""
    if verdict.decided_by == "trials":
        sooner = soonest_standing(result, user, verdict, candidate)
        if sooner is not None:
            written, verdict = _sooner_written(result, line, sooner, findings)
            say(console, verdict.line.rsplit("; ", 1)[-1])
            return written, verdict
    done = _written(result, candidate, findings, line, n == 0, verdict.how)
    return done[0], replace(verdict, line=done[1].line, kept=n == 0)


def soonest_standing(
    result: SearchResult,
    user: TrainingConfig,
    verdict: GuardVerdict,
    pick: TrialRecord,
) -> tuple[TrialRecord, GuardVerdict, float] | None:
    """Of the other setups measured faster than yours that stand without a run of their
    own, the one that reaches your levels soonest, with its verdict and its pace (x yours:
    above 1, sooner), when that is more than ``PACE_MARGIN`` ahead of ``pick``'s (kept on
    its trial's curve, ``verdict``); else None.

    A setup with your steps learns step for step as yours: its pace is its samples/s over
    yours. One whose steps differ stands on its own trial's curve, at that curve's pace.
    Setups the final round put behind its winner are among them: they could stand."""
    assert verdict.pace is not None
    best_pace, found = (1 + PACE_MARGIN) / verdict.pace, None
    for candidate in faster_than_yours(result):
        if candidate is pick:
            continue
        if learns_as_yours(candidate.config, user):
            pace = search_ratio(result, candidate)
            line = f"{_as_yours(candidate.config, user)} ({pace:.2f}x your samples/s)"
            theirs = GuardVerdict(False, "unchanged", line, 1 / pace if pace else None)
        else:
            theirs = _curve_verdict(candidate, result, user)
            if not theirs.kept or theirs.pace is None:
                continue
            pace = 1 / theirs.pace
        if pace > best_pace:
            best_pace, found = pace, (candidate, theirs, pace)
    return found


def _sooner_written(
    result: SearchResult,
    pick_line: str,
    sooner: tuple[TrialRecord, GuardVerdict, float],
    findings: list[str],
) -> tuple[SearchResult, GuardVerdict]:
    """``sooner``'s setup written in place of ``pick`` (``pick_line``: its verdict), which
    kept pace but reaches your levels later; both named, after the refusals before them."""
    candidate, theirs, pace = sooner
    passed = f"{pick_line}, but another setup reaches your levels sooner ({pace:.2f}x your pace)"
    line = f"{steps_words(candidate.config)}: {theirs.line}"
    done, verdict = _written(result, candidate, findings, line, False, theirs.how, passed)
    return done, replace(theirs, line=verdict.line, kept=False)


def _written(
    result: SearchResult,
    candidate: TrialRecord,
    findings: list[str],
    line: str,
    fastest: bool,
    how: str,
    passed: str | None = None,
) -> tuple[SearchResult, GuardVerdict]:
    """``candidate`` written, with the refusals before it named (``SHOWN`` of them) and
    ``passed``, a faster setup that kept pace but was passed over, always."""
    shown = findings[:SHOWN]
    if len(findings) > SHOWN:
        shown.append(f"{len(findings) - SHOWN} more faster setups refused or not checked")
    if passed:
        shown.append(passed)
    if shown and candidate is not result.baseline:
        line = f"{line}: that is kept"
    full = "; ".join([*shown, line])
    return replace(result, best=candidate), GuardVerdict(fastest, how, full)


def _too_few_steps(
    candidate: TrialRecord, baseline: TrialRecord, budget: Budget
) -> GuardVerdict | None:
    """Why ``candidate`` gets no check run, when its run would hold fewer than
    ``MIN_RUN_STEPS`` optimizer steps (at its search trial's samples/s) and fewer than
    yours (a slow script's own run may hold fewer than 50): so few steps
    cannot show it learns as yours, and a check run spent on it is one not spent on a setup
    they could (a 3m tune of the HF example spent both of its on batches 1024 and 2048 over
    2 processes, 9-17 steps in 9 s against your 640, and left batch 256 unchecked)."""
    yours = baseline.value / baseline.config.global_batch
    short = short_of_steps(candidate.config, candidate.value, yours, budget)
    if short is None:
        return None
    return GuardVerdict(False, "unchecked", f"not checked: {short}")


def _check_fits(plan: BudgetPlan, budget: Budget, yours: LossRun | None) -> bool:
    """Whether a candidate's check runs (and yours, when not drawn yet) fit in what the
    budget leaves, one confirmation pair kept."""
    runs = 1 if yours is not None else 2
    cost_s = runs * plan.costs.check_run_s(budget.given_s)
    return budget.allows(cost_s, keep_s=2 * plan.costs.trial_s)


def _check_run(
    job: Job,
    trainer: Trainer,
    config: TrainingConfig,
    plan: BudgetPlan,
    budget: Budget,
    yours: LossRun | None,
    console: Console | None,
) -> GuardVerdict:
    """The guard's own check runs for ``config`` (as it would be written: its LR rule
    applied), your setup's drawn once; "unchecked" when the budget no longer holds them
    (one confirmation pair kept)."""
    written, _ = lr_follows_batch(config, job.user, job.facts)
    if not _check_fits(plan, budget, yours):
        return GuardVerdict(
            False, "unchecked", f"no time was left for its check runs ({budget.stop_reason()})"
        )
    return check_convergence(
        trainer,
        written,
        job.user,
        horizon_s=guard_horizon_s(budget.given_s),
        held_out=trainer.held_out,
        say=lambda line: say(console, line),
        yours=yours,
    )
