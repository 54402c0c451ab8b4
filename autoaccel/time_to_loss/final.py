"""The schedule study's final round: the search's best is the luckiest of many candidates,
each trained once, so the best few are trained again on other data orders.

Your setup is trained again on each order too, for the times to beat on it; a finalist's
pace is the geometric mean over its runs *in this round*. Its search run is left out: that
run is what made it a finalist among some 20 candidates, so it is the selection's figure,
not the setup's (a reference CNN's trial ran 3.03x your pace in the search, then 1.65x and
2.23x on two other orders). How many finalists and orders fit is decided by ``final_plan``
from the study's budget. The rounds themselves follow the one rule of
``autoaccel.confirm.measure_in_turn``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from statistics import geometric_mean

from autoaccel.budget import FINAL_SHARE
from autoaccel.config import TrainingConfig
from autoaccel.confirm import measure_in_turn
from autoaccel.curves import Level, LossRun, pace_of

__all__ = ["final_plan", "final_round", "measured_plan", "outcome_line"]

# The final round, (finalists, other data orders) by preference: the best candidates and
# your setup trained again on other data orders, in at most a share of the study's budget.
FINAL_PLANS = ((4, 2), (3, 2), (2, 2), (2, 1), (1, 1))

#: Trains a config (None: your setup) again on data order ``order``, stopping at a level.
TrainAgain = Callable[[TrainingConfig | None, Level, int], LossRun]


def final_plan(budget_s: float, per_candidate_s: float) -> tuple[int, int]:
    """(finalists, data orders) for the final round: the most that fit in
    ``FINAL_SHARE`` of the study's budget, preferring more data orders to more finalists
    (each order trains your setup and every finalist once).

    Example:
        >>> final_plan(300, 10), final_plan(300, 20), final_plan(300, 40), final_plan(300, 50)
        ((3, 2), (2, 1), (1, 1), (0, 0))
    """
    for finalists, orders in FINAL_PLANS:
        if orders * (finalists + 1) * per_candidate_s <= FINAL_SHARE * budget_s:
            return finalists, orders
    return 0, 0  # no final round: the search's best is the pick


def measured_plan(
    room_s: float, yours_s: float, finalists_s: list[float], *, measured_orders: int = 0
) -> tuple[int, int] | None:
    """(finalists, data orders) for the final round from what its runs cost here: each
    finalist's own first run (``finalists_s``, best first) and your setup's (``yours_s``)
    per order, less your runs on the first ``measured_orders`` orders (measured already);
    the first plan of ``FINAL_PLANS`` that fits ``room_s`` (None: none does). Runs stop at
    the goal, so they cost far less than the cap ``final_plan`` must assume.

    Example:
        >>> measured_plan(80, 9, [8, 9, 9, 10, 12], measured_orders=1)
        (3, 2)
        >>> measured_plan(30, 9, [8, 9], measured_orders=1), measured_plan(5, 9, [8])
        ((2, 1), None)
    """
    for finalists, orders in FINAL_PLANS:
        if finalists > len(finalists_s):
            continue
        cost = orders * sum(finalists_s[:finalists]) + max(0, orders - measured_orders) * yours_s
        if cost <= room_s:
            return finalists, orders
    return None


def final_round(
    ranked: list[LossRun],
    levels: list[Level],
    train_again: TrainAgain,
    candidate_s: float,
    say: Callable[[str], None],
    *,
    finalists: int,
    orders: int,
) -> list[LossRun]:
    """The ``finalists`` best candidates, each trained again on ``orders`` other data
    orders (1, 2, ...; your setup too, for the times to beat on each), with their pace the
    geometric mean over those runs (``paces``), their search run left out. The search's best
    is the luckiest of many: its own run does not tell a sooner setup from a lucky one."""
    best = ranked[:finalists]
    if not levels or not best:
        return best
    say(
        f"  final round: your setup and the best {len(best)} again, on {orders} other "
        f"data order{'s' if orders > 1 else ''}"
    )

    def on_order(order: int) -> Callable[[LossRun], float] | None:
        yours = train_again(None, levels[-1], order)
        if not yours.ok:
            return None
        # Your times on this order (a level it missed keeps its first time).
        again = [replace(v, seconds=v.time_in(yours) or v.seconds) for v in levels]

        def pace(run: LossRun) -> float:
            second = train_again(run.config, levels[-1], order)
            value = pace_of(second, again, candidate_s) if second.ok else math.inf
            say(f"  #{run.number} on order {order}: {outcome_line(replace(second, pace=value))}")
            return value

        return pace

    kept = []
    for run, more in zip(best, measure_in_turn(best, orders, on_order), strict=True):
        if more and all(math.isfinite(p) for p in more):
            pace = geometric_mean(more)
            runs = f"{len(more)} other order{'s' if len(more) > 1 else ''}"
            say(
                f"  #{run.number} on {runs}: {1 / pace:.2f}x your pace (its search run, "
                f"{1 / run.pace:.2f}x, which ranked it a finalist, left out)"
            )
            kept.append(replace(run, pace=pace, paces=tuple(more)))
    return kept


def outcome_line(run: LossRun, what: str = "held-out loss") -> str:
    """A run in one line, for progress output (``what``: the loss it was scored on)."""
    if run.ok:
        pace = f", {run.speedup:.2f}x your pace" if run.speedup else ""
        return f"{what} {run.final:.4g} after {run.curve[-1].seconds:.1f} s{pace}"
    last = f" (last {run.final:.4g})" if run.curve else ""
    return f"{run.outcome}: {run.message}{last}"
