"""One plan per budget: made once, right after the baseline, from its measured costs; kept.

The baseline says what a trial costs here (its wall time) and what a run's start-up costs
(its wall time less what it measured). From those the plan decides what this budget can
afford, and the run keeps to it:

- the search: what the other phases leave, about ``search_trials`` trials;
- convergence evidence for a pick whose steps are not yours: first the trials' own loss
  curves (free: ``autoaccel.time_to_loss.trial_curves``); the guard's own check runs only
  where those cannot decide, and only when two of them fit in ``CHECK_SHARE`` of the budget;
- the final round (finalists measured again in turn) and the confirmation pairs, in at most
  ``END_SHARE`` of what the baseline leaves.

What does not fit is said with the budget that would fit it. Every share and overhead
factor is in ``autoaccel.budget``'s table, and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from autoaccel.budget import CHECK_SHARE, END_SHARE, RUN_OVERHEAD
from autoaccel.confirm import CONFIRM_PAIRS, FINAL_ROUNDS, FINALISTS
from autoaccel.time_to_loss.guard import guard_horizon_s

__all__ = ["BudgetPlan", "PhaseCosts", "plan_budget"]


@dataclass(frozen=True)
class PhaseCosts:
    """What the baseline measured a run to cost here.

    Args:
        trial_s: One trial's wall time (start-up, warm-up and window).
        start_s: A run's start-up alone (interpreter, torch, the script's own set-up).
    """

    trial_s: float
    start_s: float

    def check_run_s(self, budget_s: float) -> float:
        """One of the guard's check runs: its training horizon with scoring, and start-up."""
        return guard_horizon_s(budget_s) * RUN_OVERHEAD + self.start_s


@dataclass(frozen=True)
class BudgetPlan:
    """What a budget affords, decided once after the baseline.

    Example:
        >>> plan = plan_budget(180, 174, PhaseCosts(trial_s=5.0, start_s=3.0), guarded=True)
        >>> plan.confirm_pairs, plan.final_rounds, plan.check_s, plan.search_trials
        (3, 2, 0.0, 22)
        >>> plan.line()[:46]
        '3m: search ~22 trials (114 s); a pick whose st'
    """

    given_s: float
    left_s: float  # after the baseline
    costs: PhaseCosts
    guarded: bool  # a pick whose steps are not yours needs convergence evidence
    end_s: float  # kept for the final round and the confirmation
    final_rounds: int
    finalists: int  # the configs each final round measures again
    confirm_pairs: int
    asked_pairs: int  # the confirmation pairs asked for (``PipelineOptions.confirm_pairs``)
    check_s: float  # kept for the guard's check runs (0: they do not fit)
    check_budget_s: float  # the budget at which they would fit
    kept: dict[str, float] = field(default_factory=dict)  # later phases' shares, already kept

    @property
    def search_s(self) -> float:
        return max(0.0, self.left_s - self.end_s - self.check_s)

    @property
    def search_trials(self) -> int:
        return math.floor(self.search_s / self.costs.trial_s) if self.costs.trial_s > 0 else 0

    @property
    def check_runs(self) -> bool:
        return self.check_s > 0

    def missing(self) -> list[str]:
        """What this budget does not afford, each with the budget that would."""
        found = []
        if self.guarded and not self.check_runs:
            found.append(
                "time kept for check runs of their own where the trials' curves cannot "
                "decide (without it, they run only on time left over): give "
                f"{_spelled(self.check_budget_s)}"
            )
        asked = self.asked_pairs
        if self.confirm_pairs < asked:
            used = self.given_s - self.left_s  # the baseline's part
            more = _least_budget(lambda b: _end_phases(b - used, self.costs, asked)[1] >= asked)
            found.append(f"{asked} confirmation pairs: give {_spelled(more)}")
        return found

    def line(self) -> str:
        """The plan in one line, as printed before the search."""
        parts = [f"search ~{self.search_trials} trials ({self.search_s:.0f} s)"]
        if self.guarded:
            how = "a pick whose steps differ from yours is checked on the trials' own loss curves"
            if self.check_runs:
                how += f", and in check runs ({self.check_s:.0f} s) where those cannot decide"
            parts.append(how)
        if self.final_rounds:
            parts.append(f"final round of {self.finalists} finalists x {self.final_rounds}")
        pairs = f"{self.confirm_pairs} confirmation pair{'s' * (self.confirm_pairs != 1)}"
        parts.append(f"{pairs} (more while time is left)")
        parts += [f"{seconds:.0f} s kept for {phase}" for phase, seconds in self.kept.items()]
        line = f"{_spelled(self.given_s).removeprefix('--budget ')}: " + "; ".join(parts)
        missing = self.missing()
        return line + (f" (not: {'; '.join(missing)})" if missing else "")

    def to_dict(self) -> dict[str, object]:
        """The plan for ``summary.json``."""
        data = asdict(self)
        data.update(
            search_s=round(self.search_s, 1),
            search_trials=self.search_trials,
            check_runs=self.check_runs,
            missing=self.missing(),
            line=self.line(),
        )
        return data


def plan_budget(
    given_s: float,
    left_s: float,
    costs: PhaseCosts,
    *,
    guarded: bool,
    confirm_pairs: int = CONFIRM_PAIRS,
    kept: dict[str, float] | None = None,
) -> BudgetPlan:
    """The plan for a budget of ``given_s`` of which ``left_s`` is left after the baseline
    and after what later phases keep (``kept``: the schedule study, the LR range test).

    The final round and the confirmation get their full plan when it fits in ``END_SHARE``
    of what is left, else one confirmation pair at least and the final round only with what
    that share leaves; the check runs are kept only when two fit in ``CHECK_SHARE`` of the
    budget.
    """
    end_s, pairs, rounds, finalists = _end_phases(left_s, costs, confirm_pairs)
    check_s = 0.0
    check_budget_s = 0.0
    if guarded:
        two_runs = 2 * costs.check_run_s(given_s)
        check_budget_s = _least_budget(lambda b: 2 * costs.check_run_s(b) <= CHECK_SHARE * b)
        if two_runs <= CHECK_SHARE * given_s:
            check_s = two_runs
    return BudgetPlan(
        given_s=given_s,
        left_s=left_s,
        costs=costs,
        guarded=guarded,
        end_s=end_s,
        final_rounds=rounds,
        finalists=finalists,
        confirm_pairs=pairs,
        asked_pairs=confirm_pairs,
        check_s=check_s,
        check_budget_s=check_budget_s,
        kept=dict(kept or {}),
    )


def _end_phases(
    left_s: float, costs: PhaseCosts, confirm_pairs: int
) -> tuple[float, int, int, int]:
    """The final round's and the confirmation's share of ``left_s``: seconds kept,
    confirmation pairs, final rounds, finalists."""
    pair_s = 2 * costs.trial_s
    if pair_s <= 0:
        return 0.0, confirm_pairs, FINAL_ROUNDS, FINALISTS
    planned = confirm_pairs * pair_s + FINAL_ROUNDS * FINALISTS * costs.trial_s
    end_s = min(planned, max(pair_s, END_SHARE * left_s))
    pairs = max(1, min(confirm_pairs, math.floor(end_s / pair_s)))
    looks = max(0, math.floor((end_s - pairs * pair_s) / costs.trial_s))
    rounds, finalists = _final_shape(looks)
    return end_s, pairs, rounds, finalists


def _final_shape(looks: int) -> tuple[int, int]:
    """Rounds and finalists for ``looks`` re-measurements: all rounds for fewer finalists
    before one round for more, since a finalist's one look can decide nothing its search
    trial did not (``autoaccel.confirm``); two finalists at least, or no final round.

    Example:
        >>> [_final_shape(n) for n in (1, 2, 3, 4, 5, 6)]
        [(0, 1), (1, 2), (1, 3), (2, 2), (2, 2), (2, 3)]
    """
    if looks >= 2 * FINAL_ROUNDS:
        return FINAL_ROUNDS, min(FINALISTS, looks // FINAL_ROUNDS)
    if looks >= 2:
        return 1, min(FINALISTS, looks)
    return 0, 1  # the search's best, not measured again


def _least_budget(fits: Callable[[float], bool]) -> float:
    """The least whole minute (up to 2 hours) at which ``fits(budget_s)`` holds."""
    for minutes in range(1, 121):
        if fits(60.0 * minutes):
            return 60.0 * minutes
    return 7200.0


def _spelled(seconds: float) -> str:
    """'--budget 5m' for a whole minute, else '--budget 95s'."""
    if seconds % 60 == 0:
        return f"--budget {seconds / 60:.0f}m"
    return f"--budget {math.ceil(seconds):.0f}s"
