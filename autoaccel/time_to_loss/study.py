"""The schedule study: batch size, peak LR, warm-up, decay shape and length, and momentum,
searched for the soonest to reach your setup's held-out losses.

Stages, each a method of ``_ScheduleStudy`` (what candidates are drawn from:
``candidates.CandidateSpace``; how a candidate's batch is made up and said: ``shapes``):

1. your setup trains for the horizon; its curve gives the levels to beat (or your goal,
   your time to it measured again on two data orders);
2. an LR range test (at the tuned batch when its sweep fits the time, else at yours);
3. the peak LR is searched on a log scale around the middle of your LR and a confident
   range-test suggestion, each moved to the candidate's batch by the scaling rule;
4. candidates (the first ones enqueued, then TPE) train until they reach your lowest level,
   at most ``CANDIDATE_CAP`` times your time to it; SuccessiveHalving prunes slow ones;
5. the final round trains the best again on other data orders (``final``);
6. the pick trains once more for the whole horizon: its pace is the reported figure, and
   your setup is kept when the pick was not sooner over its runs after the search (the
   search's own run, which picked it, is left out).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from statistics import geometric_mean
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console

from autoaccel.budget import CANDIDATE_CAP, CANDIDATE_OVERHEAD, SWEEP_STEPS, Budget
from autoaccel.config import TrainingConfig
from autoaccel.curves import (
    CurvePoint,
    Goal,
    Level,
    LossRun,
    Plateau,
    find_plateau,
    goal_level,
    level_over_orders,
    pace_of,
    target_levels,
)
from autoaccel.progress import say
from autoaccel.schedule import LrFinding, lr_multiplier, scaling_rule
from autoaccel.scoring import EVALS, Scoring
from autoaccel.search import storage_url
from autoaccel.states import Outcome
from autoaccel.time_to_loss.candidates import CandidateSpace
from autoaccel.time_to_loss.final import final_plan, final_round, measured_plan, outcome_line
from autoaccel.time_to_loss.shapes import at_global, batch_words, schedule_words, steps_per_s
from autoaccel.time_to_loss.training import Trainer

__all__ = ["ConvergenceResult", "ScheduleInputs", "runs_after_words", "search_schedule"]

# With a goal, evaluated this often instead: a noisy metric (accuracy) first touches the
# goal between sparse evaluations, and evaluating as often as you would finds it there.
GOAL_EVALS = 40
MAX_EVALS = 120  # at most, for the pick's run over the whole horizon
# Data orders your time to a goal is measured on: the candidates' own, and the final
# round's first (so that round reuses it). One order alone varied 3x on the reference CNN.
YOUR_ORDERS = 2
END_PHASES = "the final round and the pick's whole-horizon run"


@dataclass(frozen=True)
class ScheduleInputs:
    """What the schedule study starts from and where it keeps its trials.

    Args:
        system: The throughput search's pick (its batch is the "fast" one).
        user: Your own setup.
        rates: Measured samples/s by global batch (from the throughput search), to size each
            candidate's schedule to the steps the horizon holds.
        fastest: The fastest measured system settings at each global batch; a candidate
            trains with those of its global batch (the nearest measured one, its per-process
            batch following). None: ``system``'s at every global batch.
        horizon_s: Training time your setup gets, and each candidate at most.
        goal: The held-out loss or metric value you aim for: when your setup reaches it in
            the horizon, the pace is the time to it alone (else to your setup's losses).
        storage: Optuna storage URL or SQLite path.
        study_name: The study's name (one per horizon and goal).
        seed: Seeds the sampler.
    """

    system: TrainingConfig
    user: TrainingConfig
    rates: dict[int, float]
    horizon_s: float
    study_name: str
    fastest: dict[int, TrainingConfig] | None = None
    goal: Goal | None = None
    storage: str | None = None
    seed: int | None = None


@dataclass
class ConvergenceResult:
    """The schedule study's answer, with the evidence for it."""

    baseline: LossRun
    best: LossRun
    runs: list[LossRun]
    finding: LrFinding | None
    rule: str
    rule_reason: str
    horizon_s: float
    holdout: str
    study_name: str
    stop_reason: str
    plateau: Plateau | None = None
    notes: list[str] = field(default_factory=list)
    levels: list[Level] = field(default_factory=list)
    check: LossRun | None = None  # the pick measured again for the whole horizon
    # The paces of the pick's runs after the search (the final round's on other data
    # orders, then ``check``): their geometric mean is what kept it.
    after_search: tuple[float, ...] = ()
    baseline_plateau: Plateau | None = None  # where your setup's curve flattened
    aim: str = ""  # what the levels are, in words ("accuracy 0.95 (your goal)", ...)

    @property
    def time_to_baseline_loss(self) -> float | None:
        """Training seconds the best needs to reach the last level (your goal, or your
        setup's loss where its curve flattened or at the end of the horizon)."""
        return self.levels[-1].time_in(self.best) if self.levels else None

    @property
    def speedup(self) -> float | None:
        """How many times sooner the pick reaches your setup's losses: over its runs after
        the search (geometric mean), the figure that kept it, when it was trained again;
        else as the search measured it. Never the whole-horizon run alone: a pick kept at
        1.01x over 1.23x and 0.83x was reported at 0.83x, slower than the setup it
        replaced."""
        after = self.after_search
        if self.best is not self.baseline and after and all(0 < p < math.inf for p in after):
            return 1 / geometric_mean(after)
        return self.best.speedup


def runs_after_words(paces: tuple[float, ...]) -> str:
    """'1.01x your pace over its 2 runs after the search (1.23x, 0.83x)'.

    Example:
        >>> runs_after_words((1 / 1.23, 1 / 0.83))
        '1.01x your pace over its 2 runs after the search (1.23x, 0.83x)'
    """
    each = ", ".join(f"{1 / p:.2f}x" for p in paces)
    return (
        f"{1 / geometric_mean(paces):.2f}x your pace over its {len(paces)} run"
        f"{'s' if len(paces) > 1 else ''} after the search ({each})"
    )


def search_schedule(
    trainer: Trainer,
    inputs: ScheduleInputs,
    budget: Budget,
    *,
    console: Console | None = None,
) -> ConvergenceResult:
    """Search batch size, peak LR, warm-up, decay and momentum for the soonest to reach your
    setup's held-out losses (see the module's docstring), within what ``budget`` leaves."""
    return _ScheduleStudy(trainer, inputs, budget, console).run()


class _ScheduleStudy:
    """One schedule study; each stage is a method, the shared facts are attributes."""

    def __init__(
        self, trainer: Trainer, inputs: ScheduleInputs, budget: Budget, console: Console | None
    ) -> None:
        self.trainer, self.inputs, self.budget = trainer, inputs, budget
        self.console = console
        self.share_s = budget.left_s()  # the study's budget, as it starts
        self.rule, self.rule_reason = scaling_rule(trainer.optimizer.name)
        self.momentum = trainer.optimizer.momentum
        self.user_lr = trainer.optimizer.lr
        self.notes: list[str] = []
        self.levels: list[Level] = []
        self.evals = EVALS
        self.aim = ""
        self.start: tuple[float | None, float | None] | None = None
        self.plan = (0, 0)  # (finalists, data orders) of the final round
        self.yours_on: dict[int, LossRun] = {}  # your setup's runs to the goal, by data order
        # Candidates that train exactly as your setup (``trains_as_yours``), by trial.
        self.yours_again: dict[int, LossRun] = {}
        # Wall seconds of runs (``_train``): each candidate's by trial, "yours" (your last
        # run to the goal), "horizon" (your run for the whole horizon).
        self.wall_s: dict[int | str, float] = {}
        # The settings measured fastest at each global batch.
        self.settings = inputs.fastest or {inputs.system.global_batch: inputs.system}

    def _train(self, key: int | str, config: TrainingConfig, **kwargs: Any) -> LossRun:
        """``trainer.train_for``, its wall time kept as ``wall_s[key]``: the final round's
        plan is sized from what the runs took (``_measured_plan``)."""
        started = time.monotonic()
        try:
            return self.trainer.train_for(config, **kwargs)
        finally:
            self.wall_s[key] = time.monotonic() - started

    def say(self, text: str) -> None:
        say(self.console, text)

    def run(self) -> ConvergenceResult:
        baseline, flattened = self._your_setup()
        finding, tested = self._range_test()
        space = self._space(self._lr_anchors(finding, tested))
        batches, left_out = space.batch_sizes()
        if left_out:
            self.say(left_out)
        study = self._open_study()
        for params in space.first(batches):
            study.enqueue_trial(params, skip_if_exists=True)
        runs, stop = self._candidates(study, space, batches)
        best, runs = self._pick(baseline, runs)
        self._noise_note()
        best, check, after_search = self._check_pick(baseline, best)
        if finding.suggestion is None:
            self.notes.append(
                f"the LR range test gave no suggestion ({finding.reason}); LRs were "
                f"searched around your own lr {self.user_lr:g}"
            )
        shown = check if check and check.ok and best is not baseline else best
        return ConvergenceResult(
            baseline=baseline,
            best=best,
            runs=runs,
            finding=finding,
            rule=self.rule,
            rule_reason=self.rule_reason,
            horizon_s=self.inputs.horizon_s,
            holdout=self.trainer.scored_on,
            study_name=self.inputs.study_name,
            stop_reason=stop,
            plateau=find_plateau(shown.curve),
            levels=self.levels,
            check=check,
            after_search=after_search,
            baseline_plateau=flattened,
            notes=self.notes,
            aim=self.aim if self.levels else "",
        )

    # --- 1. your setup: the levels to beat ------------------------------------------------

    def _your_setup(self) -> tuple[LossRun, Plateau | None]:
        """Your setup for the horizon; its levels (or your goal) and where it flattened."""
        horizon_s, user = self.inputs.horizon_s, self.inputs.user
        self.say(
            f"time-to-loss: training your setup for {horizon_s:.0f} s ({self.trainer.scored_on})"
        )
        baseline = self._train("horizon", user, seconds=horizon_s, scoring=Scoring())
        flattened = find_plateau(baseline.curve) if baseline.ok else None
        if baseline.ok:
            self.start = (baseline.start_loss, baseline.start_metric)
            self.levels = target_levels(baseline, flattened)
        self.aim = "your setup's held-out losses " + ", ".join(
            f"{v.value:.4g}" for v in self.levels
        )
        if self.inputs.goal is not None and baseline.ok:
            self._aim_at(self.inputs.goal, baseline)
        # Your pace is 1 by definition: the levels are your times (to a goal, from the run
        # evaluated as often as a candidate; its horizon run crossed it between coarser ones).
        baseline = replace(baseline, label="your setup", pace=1.0 if self.levels else math.inf)
        self.say(f"  your setup: {outcome_line(baseline)}")
        if self.levels:
            times = ", ".join(f"{v.seconds:.1f}" for v in self.levels)
            self.say(f"  to reach sooner: {self.aim} (yours at {times} s)")
        return baseline, flattened

    def _aim_at(self, goal: Goal, baseline: LossRun) -> None:
        """Your goal as the one level, when your setup reaches it in the horizon."""
        aimed = goal_level(baseline, goal)
        if aimed is None:
            self.notes.append(
                f"your setup did not reach {goal.name} {goal.target:g} in "
                f"{self.inputs.horizon_s:.0f} s of training: candidates were ranked by how "
                "soon they reach its held-out losses instead (a longer horizon_s would let it)"
            )
            return
        # Your time to it again, evaluated as often as a candidate is (the horizon's
        # evaluations lie too far apart for a goal reached early), on ``YOUR_ORDERS`` data
        # orders: the decay spans, the candidates' cap and every pace are sized from it.
        cap_s = min(self.inputs.horizon_s, CANDIDATE_CAP * aimed.seconds)
        for order in range(YOUR_ORDERS):
            self.yours_on[order] = self._train(
                "yours",
                self.inputs.user,
                seconds=cap_s,
                scoring=Scoring(GOAL_EVALS, stop_at=aimed, start=self.start),
                seed=self.trainer.seed + order if order else None,
            )
        self.levels = [level_over_orders(aimed, list(self.yours_on.values()), cap_s)]
        times = " and ".join(
            f"{t:.2f} s" if (t := aimed.time_in(run)) else f"not in {cap_s:.1f} s"
            for run in self.yours_on.values()
        )
        self.notes.append(
            f"your time to {goal.name} {goal.target:g} is the geometric mean over "
            f"{YOUR_ORDERS} data orders ({times}): one order's alone can mislead"
        )
        self.evals = GOAL_EVALS
        self.aim = f"{goal.name} {goal.target:g} (your goal)"

    # --- 2-3. the LR range test and the LRs searched ----------------------------------------

    def _range_test(self) -> tuple[LrFinding, TrainingConfig]:
        """The range test at the tuned batch when its sweep fits the time, else at yours (a
        sweep cut short never finds the loss minimum)."""
        system, user, rates = self.inputs.system, self.inputs.user, self.inputs.rates
        sweep_s = max(10.0, self.inputs.horizon_s)
        tested = system
        if SWEEP_STEPS / steps_per_s(system, rates) > sweep_s:
            tested = at_global(self.settings, user.global_batch)
        finding = self.trainer.find_lr(tested, steps=SWEEP_STEPS, max_s=sweep_s)
        self.say(f"LR range test at {batch_words(tested)}: {finding}")
        return finding, tested

    def _lr_anchors(self, finding: LrFinding, tested: TrainingConfig) -> list[float]:
        """Your LR, and the range test's suggestion when it is sure of it, each moved to
        your global batch by the rule."""
        user = self.inputs.user
        anchors = [(self.user_lr, user.global_batch)]
        if finding.suggestion is not None and finding.confidence == "high":
            anchors.append((finding.suggestion, tested.global_batch))
        return [lr * lr_multiplier(self.rule, b, user.global_batch) for lr, b in anchors]

    def _space(self, at_user: list[float]) -> CandidateSpace:
        inputs = self.inputs
        return CandidateSpace(
            user=inputs.user,
            system=inputs.system,
            settings=self.settings,
            rates=inputs.rates,
            horizon_s=inputs.horizon_s,
            candidate_s=self._candidate_s(),
            levels=self.levels,
            rule=self.rule,
            user_lr=self.user_lr,
            momentum=self.momentum,
            at_user=at_user,
        )

    # --- 4. the candidates ------------------------------------------------------------------

    def _open_study(self) -> optuna.Study:
        return optuna.create_study(
            study_name=self.inputs.study_name,
            storage=storage_url(self.inputs.storage),
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=self.inputs.seed, n_startup_trials=4),
            # The first rung a quarter of the way: held-out losses this early are noisy.
            pruner=optuna.pruners.SuccessiveHalvingPruner(
                min_resource=self.evals // 4, reduction_factor=2
            ),
            load_if_exists=True,
        )

    def _candidate_s(self) -> float:
        """A candidate that has not reached your lowest level in ``CANDIDATE_CAP`` x your
        time to it cannot be much sooner: it stops there (its pace counts the miss)."""
        horizon_s = self.inputs.horizon_s
        return min(horizon_s, CANDIDATE_CAP * self.levels[-1].seconds) if self.levels else horizon_s

    def _candidates(
        self, study: optuna.Study, space: CandidateSpace, batches: list[int]
    ) -> tuple[list[LossRun], str]:
        """Candidates until the budget, less the end phases' share, is spent."""
        per_candidate = self._candidate_s() * CANDIDATE_OVERHEAD
        self.plan = final_plan(self.share_s, per_candidate)
        finalists, orders = self.plan
        final_s = orders * (finalists + 1) * per_candidate
        kept = (self.inputs.horizon_s * CANDIDATE_OVERHEAD + final_s) if self.levels else 0.0
        self.budget.keep(END_PHASES, kept)
        runs: list[LossRun] = []
        distributions = space.distributions(batches)
        try:
            while self.budget.allows(per_candidate):
                trial = study.ask(distributions)
                config = space.config_of(dict(trial.params))
                runs.append(self._candidate(study, trial, config, space.trains_as_yours(config)))
            return runs, self.budget.stop_reason()
        finally:
            self.budget.release(END_PHASES)

    def _candidate(
        self, study: optuna.Study, trial: optuna.Trial, config: TrainingConfig, yours: bool
    ) -> LossRun:
        """One candidate trained, scored and told to the study (``yours``: it trains exactly
        as your setup, ``CandidateSpace.trains_as_yours``)."""
        levels = self.levels

        def report(k: int, point: CurvePoint) -> bool:
            # Every candidate is evaluated at the same training times, on the goal's scale.
            trial.report(levels[-1].score(point) if levels else point.loss, k)
            return trial.should_prune()

        candidate_s = self._candidate_s()
        result = self._train(
            trial.number,
            config,
            seconds=candidate_s,
            scoring=self._scoring(levels[-1] if levels else None),
            on_eval=report,
        )
        result = replace(result, number=trial.number, pace=pace_of(result, levels, candidate_s))
        again = " (your setup again)" if yours else ""
        if again:
            result = replace(result, label=f"#{trial.number}{again}")
            self.yours_again[trial.number] = result
        if result.ok and math.isfinite(result.pace):
            study.tell(trial, result.pace)
        elif result.ok:  # no levels to reach (your setup failed): the lowest loss wins
            study.tell(trial, result.best_loss)
        elif result.outcome is Outcome.PRUNED:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, state=TrialState.FAIL)
        momentum = f", momentum {config.momentum}" if config.momentum is not None else ""
        self.say(
            f"  schedule trial #{trial.number}: {batch_words(config)}, {config.precision}, "
            f"lr {config.lr:.3g}, {schedule_words(config)}{momentum}{again} -> "
            f"{outcome_line(result)}"
        )
        return result

    def _scoring(self, stop_at: Level | None) -> Scoring:
        return Scoring(self.evals, stop_at=stop_at, start=self.start)

    # --- 5-6. the final round and the pick ------------------------------------------------

    def _pick(self, baseline: LossRun, runs: list[LossRun]) -> tuple[LossRun, list[LossRun]]:
        """The soonest over the final round (your setup wins a tie: a candidate must be
        sooner to be picked); without levels or a final round, the search's runs stand."""
        candidate_s = self._candidate_s()

        def train_again(config: TrainingConfig | None, level: Level, order: int) -> LossRun:
            if config is None and order in self.yours_on:  # measured for the goal already
                return self.yours_on[order]
            return self.trainer.train_for(
                config or self.inputs.user,
                seconds=candidate_s,
                scoring=self._scoring(level),
                seed=self.trainer.seed + order,
            )

        candidates = [r for r in runs if r.number not in self.yours_again]  # never the pick
        ranked = sorted(
            (r for r in candidates if r.ok and math.isfinite(r.pace)), key=lambda r: r.pace
        )
        self.plan = n_finalists, orders = self._measured_plan(ranked)
        finalists = final_round(
            ranked,
            self.levels,
            train_again,
            candidate_s,
            self.say,
            finalists=n_finalists,
            orders=orders,
        )
        runs = [next((f for f in finalists if f.number == r.number), r) for r in runs]
        pool = finalists if self.levels and n_finalists else candidates
        contenders = [r for r in [baseline, *pool] if r.ok]
        best = min(contenders, key=lambda r: (r.pace, r.best_loss)) if contenders else baseline
        return best, runs

    def _noise_note(self) -> None:
        """What your setup measured again as a candidate says: the spread between two runs
        of one setup here, against which a candidate's pace is to be read."""
        measured = [
            f"#{n} {r.speedup:.2f}x" + ("" if r.ok else f" ({r.outcome} there)")
            for n, r in self.yours_again.items()
            if r.speedup and r.outcome in (Outcome.OK, Outcome.PRUNED)
        ]
        if measured:
            self.notes.append(
                f"schedule trial {', '.join(measured)} your pace: it trained exactly as your "
                "setup (your batch size, LR and momentum, no schedule of autoaccel's), so "
                "this is the spread between two runs of one setup here; it is never the pick"
            )

    def _measured_plan(self, ranked: list[LossRun]) -> tuple[int, int]:
        """The final round's plan from its runs' measured costs (each finalist's first run,
        your setup's run to the goal), in the time left less the pick's whole-horizon run;
        the plan kept for it when the costs are unknown or none fits."""
        if "yours" not in self.wall_s or "horizon" not in self.wall_s:
            return self.plan
        # The pick's run: your horizon run's cost, its more frequent evaluations allowed for.
        room = self.budget.left_s(keep_s=self.wall_s["horizon"] * CANDIDATE_OVERHEAD)
        costs = [
            math.inf if r.number is None else self.wall_s.get(r.number, math.inf) for r in ranked
        ]
        fitting = measured_plan(room, self.wall_s["yours"], costs, measured_orders=YOUR_ORDERS - 1)
        return fitting or self.plan

    def _check_pick(
        self, baseline: LossRun, best: LossRun
    ) -> tuple[LossRun, LossRun | None, tuple[float, ...]]:
        """The pick again, for the whole horizon, on a data order no run of it has seen: a
        fresh measurement of its pace (the search's best is the luckiest of many) and its
        full curve, for the plateau. Your setup is kept when it was not sooner overall."""
        if best is baseline or not self.levels:
            return best, None, ()
        horizon_s = self.inputs.horizon_s
        self.say(f"  the pick again for the whole {horizon_s:.0f} s")
        # Evaluated as often as a candidate was, so its times to the levels compare.
        evals = min(MAX_EVALS, max(self.evals, round(self.evals * horizon_s / self._candidate_s())))
        check = self.trainer.train_for(
            best.config,
            seconds=horizon_s,
            scoring=Scoring(evals, start=self.start),
            seed=self.trainer.seed + self.plan[1] + 1,
        )
        check = replace(check, label="the pick again", pace=pace_of(check, self.levels, horizon_s))
        self.say(f"  the pick again: {outcome_line(check)}")
        # The final round's runs and this one: never the search run that made it the pick.
        measured = [*best.paces, check.pace if check.ok else math.inf]
        if geometric_mean(measured) >= 1:
            self.notes.append(
                f"the pick (#{best.number}) was not sooner than your setup over its runs "
                "after the search "
                f"({', '.join(f'{1 / p:.2f}x' for p in measured)}): your setup is kept"
            )
            self.say(f"  {self.notes[-1]}")
            return baseline, check, ()
        self.say(f"  the pick stands: {runs_after_words(tuple(measured))}")
        return best, check, tuple(measured)
