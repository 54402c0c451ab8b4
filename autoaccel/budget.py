"""The user's wall-clock budget as one deadline, created once, that every phase draws from.

Like Optuna's ``optimize(timeout=...)``: one start time, one clock, checked in one place.
The front end makes a ``Budget`` from what the user gave (``--budget 3m``, ``budget_s=``)
when it starts, before the baseline; the search, the final round, the confirmation and the
schedule study each ask it how much is left. A later phase's share is held back by name
(``keep``) until that phase begins (``release``), so no phase spends it. Messages quote the
budget as given and the time really spent.

Example:
    >>> now = [0.0]
    >>> budget = Budget(75, clock=lambda: now[0])
    >>> budget.keep("confirmation", 30)
    >>> now[0] = 20.0
    >>> budget.left_s(), budget.stop_reason()
    (25.0, 'budget (75 s): 20 s spent, 30 s kept for confirmation')
    >>> budget.release("confirmation")
    >>> budget.left_s()
    55.0
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = [
    "ADVISE_BUDGET_S",
    "CANDIDATE_CAP",
    "CANDIDATE_OVERHEAD",
    "CHECK_SHARE",
    "DEFAULT_MAX_TRIALS",
    "END_SHARE",
    "FINAL_SHARE",
    "GUARD_SHARE",
    "HORIZONS_PER_BUDGET",
    "MORE_PAIRS",
    "RUN_OVERHEAD",
    "SWEEP_MAX_LR",
    "SWEEP_MIN_LR",
    "SWEEP_STEPS",
    "THROUGHPUT_SHARE",
    "TRIAL_TIMEOUT_S",
    "TUNE_BUDGET_S",
    "TUNE_TTL_BUDGET_S",
    "Budget",
]

#: The defaults, in one place: ``advise()`` (x3 with time-to-loss) and ``autoaccel tune``.
ADVISE_BUDGET_S = 120.0
TUNE_BUDGET_S = 240.0
TUNE_TTL_BUDGET_S = 480.0  # tune --objective time-to-loss: the schedule study runs scripts too
DEFAULT_MAX_TRIALS = 40  # the budget in trials, for both
TRIAL_TIMEOUT_S = 120.0  # tune: a script's trial is killed after this long
# The LR range test's one default sweep (every path: tune --lr-find, lr-find, the schedule
# study), here so that the CLI's help reads it without importing torch.
SWEEP_MIN_LR = 1e-7
SWEEP_MAX_LR = 10.0
SWEEP_STEPS = 100

# --- How a budget is shared: every share and overhead factor, in one table -----------------
# The throughput pipeline (autoaccel.pipeline.plan decides from these once, after the baseline)
END_SHARE = 0.4  # of what the baseline leaves, at most for the final round and confirmation
MORE_PAIRS = 2  # confirmation pairs: up to this many times those asked, while they fit
CHECK_SHARE = 0.15  # of the whole budget, at most for the guard's two check runs
GUARD_SHARE = 0.05  # of the budget, for each of the guard's two check runs' horizon
RUN_OVERHEAD = 1.25  # a loss-curve run's wall time over its training time (scoring, start-up)
# Time-to-loss (autoaccel.pipeline.schedule, autoaccel.time_to_loss)
THROUGHPUT_SHARE = 0.35  # of a time-to-loss budget, for the system-knob search
HORIZONS_PER_BUDGET = 10  # a schedule candidate trains for about 1/10 of what is left
CANDIDATE_CAP = 2.0  # a candidate trains at most this many times your time to your loss
CANDIDATE_OVERHEAD = 1.3  # a candidate's wall time over its training time (evaluations), at most
FINAL_SHARE = 0.3  # of the schedule study's budget, at most for its final round


class Budget:
    """A deadline: ``given_s`` seconds from the moment it is made.

    Args:
        given_s: The budget as the user gave it, in seconds.
        clock: Seconds as a float (monotonic); injected in tests.
    """

    def __init__(self, given_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.given_s = float(given_s)
        self.clock = clock
        self.started = clock()
        self._kept: dict[str, float] = {}  # later phases' shares, by phase name

    def keep(self, phase: str, seconds: float) -> None:
        """Hold ``seconds`` back for ``phase``, which comes later: nothing before spends it."""
        self._kept[phase] = max(0.0, seconds)

    def release(self, phase: str) -> None:
        """``phase`` begins: its share is the time left now."""
        self._kept.pop(phase, None)

    def kept(self) -> dict[str, float]:
        """The later phases' kept shares, by phase name (seconds)."""
        return dict(self._kept)

    def spent_s(self) -> float:
        """Seconds since the budget was made."""
        return self.clock() - self.started

    def left_s(self, *, keep_s: float = 0.0) -> float:
        """Seconds left now for this phase: the budget less what is spent, what later
        phases keep, and ``keep_s`` more."""
        return self.given_s - self.spent_s() - sum(self._kept.values()) - keep_s

    def allows(self, cost_s: float, *, keep_s: float = 0.0) -> bool:
        """Whether work of ``cost_s`` seconds fits before the deadline, ``keep_s`` kept."""
        return self.left_s(keep_s=keep_s) >= cost_s

    def stop_reason(self) -> str:
        """Why a phase stopped for time: the budget as given, what was spent, what is kept."""
        line = f"budget ({self.given_s:g} s): {_seconds(self.spent_s())} spent"
        kept = [f"{_seconds(s)} kept for {phase}" for phase, s in self._kept.items()]
        return ", ".join([line, *kept])

    def __repr__(self) -> str:
        return f"Budget(given_s={self.given_s:g}, spent_s={self.spent_s():.1f})"


def _seconds(value: float) -> str:
    """Seconds for a message: whole ones, tenths under 10 s."""
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"
