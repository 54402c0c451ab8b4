"""What a schedule study's candidates are drawn from: the global batches a run holds enough
steps of, the peak LR on a log scale around your LR and the range test's, warm-up, decay
shape and length, and momentum; the first candidates enqueued; and each candidate's config
(the settings measured fastest at its global batch, its LR moved there by the rule, its
schedule sized to the steps it will take)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution

from autoaccel.config import SCHEDULES, TrainingConfig
from autoaccel.curves import Level
from autoaccel.schedule import lr_multiplier
from autoaccel.search import powers_of_two
from autoaccel.time_to_loss.shapes import at_global, horizon_steps, nearest, step_floor

__all__ = ["DECAY_SPANS", "LR_SPREAD", "MOMENTA", "WARMUP_FRACTIONS", "CandidateSpace"]

WARMUP_FRACTIONS = (0.0, 0.05, 0.1, 0.2)  # of the steps the decay spans
DECAY_SPANS = (0.5, 1.0, 2.0)  # the decay's length, in multiples of your time to the last level
MOMENTA = (0.8, 0.9, 0.95, 0.99)
LR_SPREAD = 4.0  # peak LR searched from 1/4x to 4x the middle, at least


@dataclass(frozen=True)
class CandidateSpace:
    """The space of one schedule study, once your setup's levels and the LR anchors are
    known.

    Args:
        user: Your own setup.
        system: The throughput search's pick (its batch is the "fast" one).
        settings: The settings measured fastest at each global batch.
        rates: Measured samples/s by global batch.
        horizon_s: Training time your setup gets, and each candidate at most.
        candidate_s: Training time a candidate gets.
        levels: Your setup's levels to reach (none when your setup failed).
        rule: The LR scaling rule of your optimizer's family.
        user_lr: Your LR.
        momentum: Your optimizer's momentum (its name and value), None without one.
        at_user: Your LR and a confident range-test suggestion, each at your global batch.
    """

    user: TrainingConfig
    system: TrainingConfig
    settings: dict[int, TrainingConfig]
    rates: dict[int, float]
    horizon_s: float
    candidate_s: float
    levels: list[Level]
    rule: str
    user_lr: float
    momentum: tuple[str, float] | None
    at_user: list[float]

    @property
    def middle(self) -> float:
        """The geometric middle of the LR anchors (at your global batch)."""
        return math.sqrt(min(self.at_user) * max(self.at_user))

    def batch_sizes(self) -> tuple[list[int], str | None]:
        """Every global batch the throughput search ran without failing, and smaller ones
        down to a quarter of yours (on a CPU smaller batches cost little per sample), less
        those a candidate's run holds fewer than ``MIN_RUN_STEPS`` optimizer steps of, and
        fewer than of yours (which always stays); with a line naming those left out."""
        rates, user, seconds = self.rates, self.user, self.candidate_s
        found = sorted({*rates, *powers_of_two(max(1, user.global_batch // 4), max(rates))})
        yours = horizon_steps(at_global(self.settings, user.global_batch), rates, seconds)
        floor = step_floor(yours)
        kept = [
            b
            for b in found
            if b == user.global_batch
            or horizon_steps(at_global(self.settings, b), rates, seconds) >= floor
        ]
        left_out = [b for b in found if b not in kept]
        if not left_out:
            return kept, None
        return kept, (
            f"batches {', '.join(map(str, left_out))} left out: the {seconds:.0f} s a "
            f"candidate trains holds fewer than {floor} optimizer steps of them"
        )

    def distributions(self, batches: list[int]) -> dict[str, Any]:
        spread = max(LR_SPREAD, 2 * math.sqrt(max(self.at_user) / min(self.at_user)))
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

    def config_of(self, params: dict[str, Any]) -> TrainingConfig:
        """A candidate's config: the settings measured fastest at its global batch, the LR
        moved there by the rule, and its schedule sized to the steps it will take."""
        shaped = at_global(self.settings, int(params["global_batch"]))
        # The decay ends after a multiple of your time to the last level (a schedule that
        # anneals by then gets there sooner than one spread over the horizon), or with the
        # horizon when there are no levels.
        horizon_s = self.horizon_s
        span_s = (
            params["decay_span"] * self.levels[-1].seconds if "decay_span" in params else horizon_s
        )
        steps = horizon_steps(shaped, self.rates, min(horizon_s, span_s))
        middle = self.middle * lr_multiplier(self.rule, self.user.global_batch, shaped.global_batch)
        return replace(
            shaped,
            lr=float(f"{middle * params['lr_scale']:.4g}"),
            momentum=params.get("momentum"),
            warmup_steps=round(params["warmup"] * steps),
            schedule=params["schedule"],
            schedule_steps=steps,
            lr_scaling="none",
        )

    def first(self, batches: list[int]) -> list[dict[str, Any]]:
        """The candidates to enqueue first: the middle and your LR, each at both batch
        sizes, and Smith's one-cycle at the range test's LR."""
        user, system, middle = self.user, self.system, self.middle
        # Your LR (moved by the rule) as a multiple of the middle of the searched range.
        yours = float(f"{self.user_lr / middle:.4g}")
        # The throughput pick's batch, or the nearest a candidate's run holds enough of
        mine, fast = nearest(user.global_batch, batches), nearest(system.global_batch, batches)
        first: list[dict[str, Any]] = [
            {"global_batch": mine, "warmup": 0.1, "schedule": "one-cycle"},
            {"global_batch": mine, "warmup": 0.0, "schedule": "constant", "lr_scale": yours},
            {"global_batch": fast, "warmup": 0.05, "schedule": "constant", "lr_scale": yours},
            {"global_batch": fast, "warmup": 0.1, "schedule": "one-cycle"},
            {"global_batch": mine, "warmup": 0.05, "schedule": "cosine", "decay_span": 2.0},
            {"global_batch": fast, "warmup": 0.05, "schedule": "cosine", "decay_span": 2.0},
        ]
        if len(self.at_user) > 1:  # Smith's one-cycle recipe: the range test's LR as the peak
            suggested = float(f"{self.at_user[1] / middle:.4g}")
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
        momentum = {"momentum": nearest(self.momentum[1], MOMENTA)} if self.momentum else {}
        for params in first:
            if not self.levels:
                params.pop("decay_span", None)
        return [{"lr_scale": 1.0, **span, **params, **momentum} for params in first]

    def trains_as_yours(self, config: TrainingConfig) -> bool:
        """Whether a candidate trains exactly as your setup: your system settings, global
        batch, LR and momentum, with no warm-up and no schedule of autoaccel's (your own
        scheduler, if any, then runs as it does for you). The study may propose it (your
        LR at your batch is enqueued first); it is your setup measured again, never a pick.
        """
        user, mine = self.user, self.momentum
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
