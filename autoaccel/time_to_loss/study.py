"""The schedule study: batch size, peak LR, warm-up, decay shape and length, and momentum,
searched for the soonest to reach your setup's held-out losses.

Stages, each a method of ``_ScheduleStudy``:

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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from statistics import geometric_mean
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from rich.console import Console

from autoaccel.budget import CANDIDATE_CAP, CANDIDATE_OVERHEAD, SWEEP_STEPS, Budget
from autoaccel.config import SCHEDULES, TrainingConfig
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
from autoaccel.search import powers_of_two, storage_url
from autoaccel.states import Outcome
from autoaccel.time_to_loss.final import final_plan, final_round, measured_plan, outcome_line
from autoaccel.time_to_loss.training import Trainer

__all__ = ["ConvergenceResult", "ScheduleInputs", "at_global", "search_schedule"]

# With a goal, evaluated this often instead: a noisy metric (accuracy) first touches the
# goal between sparse evaluations, and evaluating as often as you would finds it there.
GOAL_EVALS = 40
MAX_EVALS = 120  # at most, for the pick's run over the whole horizon
# Data orders your time to a goal is measured on: the candidates' own, and the final
# round's first (so that round reuses it). One order alone varied 3x on the reference CNN.
YOUR_ORDERS = 2
WARMUP_FRACTIONS = (0.0, 0.05, 0.1, 0.2)  # of the steps the decay spans
DECAY_SPANS = (0.5, 1.0, 2.0)  # the decay's length, in multiples of your time to the last level
MOMENTA = (0.8, 0.9, 0.95, 0.99)
LR_SPREAD = 4.0  # peak LR searched from 1/4x to 4x the middle, at least
# A candidate's run must hold this many optimizer steps of its batch. The HF example's
# study (a 6 s horizon, 4,096 samples) spent 8 of its 25 candidates on batches of 512 to
# 4,096, 4 to 25 steps each, all pruned at the first rung near the untrained loss.
MIN_RUN_STEPS = 50


def step_floor(yours: int) -> int:
    """The optimizer steps a run of another batch must hold to show how it learns, when a
    run of yours holds ``yours``: ``MIN_RUN_STEPS``, or yours where fewer (a slow script's
    own run may hold fewer than 50; a setup with as many steps as yours can tell)."""
    return min(MIN_RUN_STEPS, yours)


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
    baseline_plateau: Plateau | None = None  # where your setup's curve flattened
    aim: str = ""  # what the levels are, in words ("accuracy 0.95 (your goal)", ...)

    @property
    def time_to_baseline_loss(self) -> float | None:
        """Training seconds the best needs to reach the last level (your goal, or your
        setup's loss where its curve flattened or at the end of the horizon)."""
        return self.levels[-1].time_in(self.best) if self.levels else None

    @property
    def speedup(self) -> float | None:
        """How many times sooner the pick reaches your setup's losses: measured again
        for the whole horizon when it was, else as the search measured it."""
        if self.check is not None and self.check.ok and self.best is not self.baseline:
            return self.check.speedup
        return self.best.speedup


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


def _steps_per_s(config: TrainingConfig, rates: dict[int, float]) -> float:
    """Optimizer steps per second at this global batch, from the measured samples/s (of the
    nearest measured global batch when this one was not measured)."""
    nearest = _nearest_log(config.global_batch, rates)
    return rates.get(config.global_batch, rates[nearest]) / config.global_batch


def _nearest_log(value: int, measured: Any) -> int:
    """The measured batch nearest to ``value`` on a log scale."""
    return min(measured, key=lambda b: abs(math.log(b / value)))


def at_global(settings: dict[int, TrainingConfig], global_batch: int) -> TrainingConfig:
    """The settings measured at the nearest global batch, at ``global_batch``: the same
    processes and accumulation when they divide it (the per-process batch follows), else
    one process."""
    shaped = settings[_nearest_log(global_batch, settings)]
    split = shaped.processes * shaped.grad_accum_steps
    if global_batch % split == 0:
        return replace(shaped, batch_size=global_batch // split)
    return replace(
        shaped, batch_size=global_batch, grad_accum_steps=1, processes=1, strategy="none"
    )


def split_words(config: TrainingConfig) -> str:
    """How the global batch is made up: '2 processes x 32', '16 x 4 accumulated'."""
    parts = [f"{config.processes} processes"] if config.processes > 1 else []
    parts.append(f"{config.batch_size}")
    if config.grad_accum_steps > 1:
        parts.append(f"{config.grad_accum_steps} accumulated")
    return " x ".join(parts)


def schedule_words(config: TrainingConfig) -> str:
    """'cosine, warm-up 20/391 steps'; a constant LR with no warm-up is no schedule of
    autoaccel's, so your script's own runs (a Trainer's ``lr_scheduler_type``, linear by
    default in HF's; none in a plain loop: the LR held).

    Example:
        >>> schedule_words(TrainingConfig(schedule="cosine", warmup_steps=20, schedule_steps=391))
        'cosine, warm-up 20/391 steps'
        >>> schedule_words(TrainingConfig(schedule_steps=391))
        "your script's own schedule (none of autoaccel's)"
    """
    if config.schedule == "constant" and not config.warmup_steps:
        return "your script's own schedule (none of autoaccel's)"
    return f"{config.schedule}, warm-up {config.warmup_steps}/{config.schedule_steps} steps"


def batch_words(config: TrainingConfig) -> str:
    """'batch 64', or 'batch 64 (2 processes x 32)' when it is split."""
    if config.global_batch == config.batch_size:
        return f"batch {config.batch_size}"
    return f"batch {config.global_batch} ({split_words(config)})"


def _horizon_steps(config: TrainingConfig, rates: dict[int, float], seconds: float) -> int:
    """Optimizer steps ``seconds`` of training hold at this batch size."""
    return max(1, int(seconds * _steps_per_s(config, rates)))


def _nearest(value: float, options: Sequence[Any]) -> Any:
    return min(options, key=lambda o: abs(o - value))


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
        # Candidates that train exactly as your setup (``_trains_as_yours``), by trial.
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
        at_user = self._lr_anchors(finding, tested)
        batches = self._batch_sizes()
        study = self._open_study()
        self._enqueue_first(study, batches, at_user)
        runs, stop = self._candidates(study, self._distributions(batches, at_user), at_user)
        best, runs = self._pick(baseline, runs)
        self._noise_note()
        best, check = self._check_pick(baseline, best)
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
        if SWEEP_STEPS / _steps_per_s(system, rates) > sweep_s:
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

    def _batch_sizes(self) -> list[int]:
        """Every global batch the throughput search ran without failing, and smaller ones
        down to a quarter of yours (on a CPU smaller batches cost little per sample), less
        those a candidate's run holds fewer than ``MIN_RUN_STEPS`` optimizer steps of, and
        fewer than of yours (which always stays)."""
        rates, user = self.inputs.rates, self.inputs.user
        found = sorted({*rates, *powers_of_two(max(1, user.global_batch // 4), max(rates))})
        seconds = self._candidate_s()
        yours = _horizon_steps(at_global(self.settings, user.global_batch), rates, seconds)
        floor = step_floor(yours)
        kept = [
            b
            for b in found
            if b == user.global_batch
            or _horizon_steps(at_global(self.settings, b), rates, seconds) >= floor
        ]
        left_out = [b for b in found if b not in kept]
        if left_out:
            self.say(
                f"batches {', '.join(map(str, left_out))} left out: the {seconds:.0f} s a "
                f"candidate trains holds fewer than {floor} optimizer steps of them"
            )
        return kept

    @staticmethod
    def _middle(at_user: list[float]) -> float:
        """The geometric middle of the anchors (at your global batch)."""
        return math.sqrt(min(at_user) * max(at_user))

    def _distributions(self, batches: list[int], at_user: list[float]) -> dict[str, Any]:
        spread = max(LR_SPREAD, 2 * math.sqrt(max(at_user) / min(at_user)))
        distributions: dict[str, Any] = {
            "global_batch": CategoricalDistribution(batches),
            "lr_scale": FloatDistribution(1 / spread, spread, log=True),
            "warmup": CategoricalDistribution(WARMUP_FRACTIONS),
            "schedule": CategoricalDistribution(SCHEDULES),
        }
        if self.momentum is not None:
            distributions["momentum"] = CategoricalDistribution(MOMENTA)
        if self.levels:  # how long the decay lasts, in multiples of your time to the last level
            distributions["decay_span"] = CategoricalDistribution(DECAY_SPANS)
        return distributions

    def _config_of(self, params: dict[str, Any], at_user: list[float]) -> TrainingConfig:
        """A candidate's config: the settings measured fastest at its global batch, the LR
        moved there by the rule, and its schedule sized to the steps it will take."""
        inputs = self.inputs
        shaped = at_global(self.settings, int(params["global_batch"]))
        # The decay ends after a multiple of your time to the last level (a schedule that
        # anneals by then gets there sooner than one spread over the horizon), or with the
        # horizon when there are no levels.
        horizon_s = inputs.horizon_s
        span_s = (
            params["decay_span"] * self.levels[-1].seconds if "decay_span" in params else horizon_s
        )
        steps = _horizon_steps(shaped, inputs.rates, min(horizon_s, span_s))
        middle = self._middle(at_user) * lr_multiplier(
            self.rule, inputs.user.global_batch, shaped.global_batch
        )
        return replace(
            shaped,
            lr=float(f"{middle * params['lr_scale']:.4g}"),
            momentum=params.get("momentum"),
            warmup_steps=round(params["warmup"] * steps),
            schedule=params["schedule"],
            schedule_steps=steps,
            lr_scaling="none",
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

    def _enqueue_first(self, study: optuna.Study, batches: list[int], at_user: list[float]) -> None:
        """The middle and your LR, each at both batch sizes, and Smith's one-cycle at the
        range test's LR, first."""
        user, system = self.inputs.user, self.inputs.system
        middle = self._middle(at_user)
        # Your LR (moved by the rule) as a multiple of the middle of the searched range.
        yours = float(f"{self.user_lr / middle:.4g}")
        # The throughput pick's batch, or the nearest a candidate's run holds enough of
        mine, fast = _nearest(user.global_batch, batches), _nearest(system.global_batch, batches)
        first: list[dict[str, Any]] = [
            {"global_batch": mine, "warmup": 0.1, "schedule": "one-cycle"},
            {"global_batch": mine, "warmup": 0.0, "schedule": "constant", "lr_scale": yours},
            {"global_batch": fast, "warmup": 0.05, "schedule": "constant", "lr_scale": yours},
            {"global_batch": fast, "warmup": 0.1, "schedule": "one-cycle"},
            {"global_batch": mine, "warmup": 0.05, "schedule": "cosine", "decay_span": 2.0},
            {"global_batch": fast, "warmup": 0.05, "schedule": "cosine", "decay_span": 2.0},
        ]
        if len(at_user) > 1:  # Smith's one-cycle recipe: the range test's LR as the peak
            suggested = float(f"{at_user[1] / middle:.4g}")
            first.insert(
                1,
                {
                    "global_batch": mine,
                    "warmup": 0.1,
                    "schedule": "one-cycle",
                    "lr_scale": suggested,
                },
            )
        span = {"decay_span": 1.0} if self.levels else {}
        momentum = {"momentum": _nearest(self.momentum[1], MOMENTA)} if self.momentum else {}
        for params in first:
            if not self.levels:
                params.pop("decay_span", None)
            study.enqueue_trial(
                {"lr_scale": 1.0, **span, **params, **momentum}, skip_if_exists=True
            )

    def _candidate_s(self) -> float:
        """A candidate that has not reached your lowest level in ``CANDIDATE_CAP`` x your
        time to it cannot be much sooner: it stops there (its pace counts the miss)."""
        horizon_s = self.inputs.horizon_s
        return min(horizon_s, CANDIDATE_CAP * self.levels[-1].seconds) if self.levels else horizon_s

    def _candidates(
        self, study: optuna.Study, distributions: dict[str, Any], at_user: list[float]
    ) -> tuple[list[LossRun], str]:
        """Candidates until the budget, less the end phases' share, is spent."""
        per_candidate = self._candidate_s() * CANDIDATE_OVERHEAD
        self.plan = final_plan(self.share_s, per_candidate)
        finalists, orders = self.plan
        final_s = orders * (finalists + 1) * per_candidate
        kept = (self.inputs.horizon_s * CANDIDATE_OVERHEAD + final_s) if self.levels else 0.0
        self.budget.keep(END_PHASES, kept)
        runs: list[LossRun] = []
        try:
            while self.budget.allows(per_candidate):
                trial = study.ask(distributions)
                config = self._config_of(dict(trial.params), at_user)
                runs.append(self._candidate(study, trial, config))
            return runs, self.budget.stop_reason()
        finally:
            self.budget.release(END_PHASES)

    def _candidate(
        self, study: optuna.Study, trial: optuna.Trial, config: TrainingConfig
    ) -> LossRun:
        """One candidate trained, scored and told to the study."""
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
        again = " (your setup again)" if self._trains_as_yours(config) else ""
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

    def _trains_as_yours(self, config: TrainingConfig) -> bool:
        """Whether a candidate trains exactly as your setup: your system settings, global
        batch, LR and momentum, with no warm-up and no schedule of autoaccel's (your own
        scheduler, if any, then runs as it does for you). The study may propose it (your
        LR at your batch is enqueued first); it is your setup measured again, never a pick.
        """
        user, mine = self.inputs.user, self.momentum
        if (config.schedule, config.warmup_steps) != (user.schedule, user.warmup_steps):
            return False
        same_lr = config.lr is None or math.isclose(config.lr, self.user_lr, rel_tol=1e-3)
        same_momentum = config.momentum is None or (
            mine is not None and math.isclose(config.momentum, mine[1], rel_tol=1e-6)
        )
        steps = replace(
            config,
            lr=user.lr,
            momentum=user.momentum,
            schedule_steps=user.schedule_steps,
            lr_scaling=user.lr_scaling,
        )
        return same_lr and same_momentum and steps.knobs() == user.knobs()

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

    def _check_pick(self, baseline: LossRun, best: LossRun) -> tuple[LossRun, LossRun | None]:
        """The pick again, for the whole horizon, on a data order no run of it has seen: a
        fresh measurement of its pace (the search's best is the luckiest of many) and its
        full curve, for the plateau. Your setup is kept when it was not sooner overall."""
        if best is baseline or not self.levels:
            return best, None
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
            return baseline, check
        return best, check
