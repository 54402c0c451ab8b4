"""The answer's types: an ``Advice`` and the ``Recommendation`` objects it holds.

The methods that show an ``Advice`` (``summary``, ``tables``, ``to_dict``) call the pure
functions of ``autoaccel.advice.render``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from autoaccel.advice.render import advice_dict, advice_tables, summary_text
from autoaccel.config import TrainingConfig, save_config
from autoaccel.confirm import Speedup
from autoaccel.measure import Measurement
from autoaccel.probe import HardwareProfile
from autoaccel.search import Diagnosis, SearchResult, SearchSpace, TrialRecord
from autoaccel.time_to_loss import ConvergenceResult
from autoaccel.time_to_loss.guard import GuardVerdict

__all__ = ["Advice", "Recommendation"]


@dataclass(frozen=True)
class Recommendation:
    """One piece of advice; ``measured`` says whether ``evidence`` is a measurement."""

    text: str
    evidence: str
    measured: bool
    knob: str | None = None

    def __str__(self) -> str:
        label = "measured" if self.measured else "advice, not measured"
        return f"{self.text} [{label}: {self.evidence}]"


@dataclass
class Advice:
    """The answer of ``advise()`` and ``autoaccel tune``.

    Example:
        >>> advice = autoaccel.advise(model, (X, y))  # doctest: +SKIP
        >>> print(advice.summary())                    # doctest: +SKIP
        >>> advice.save("autoaccel.yaml")              # doctest: +SKIP
    """

    config: TrainingConfig
    baseline: Measurement
    best: Measurement
    speedup: Speedup
    diagnosis: Diagnosis
    recommendations: list[Recommendation]
    profile: HardwareProfile
    search: SearchResult
    space: SearchSpace
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    convergence: ConvergenceResult | None = None
    record_path: Path | None = None  # the run record (summary.json): `autoaccel report` it
    objective: str = ""  # what chose the pick; whether convergence was measured or guarded
    guard: GuardVerdict | None = None  # the throughput pick's convergence check
    # In a shared study, the worker that runs the end phase and writes the config, when it
    # is another one; None when this run does (the speedup is then confirmed here).
    written_by: str | None = None
    plan: dict[str, Any] | None = None  # the budget plan (``autoaccel.pipeline.plan``)
    # The fastest setup measured (the final round's winner), which the config written may
    # not be (the guard refused it); None when the pipeline did not get that far.
    fastest: TrialRecord | None = None

    def to_yaml(self) -> str:
        """The config as commented YAML, with its evidence."""
        return self.config.to_yaml()

    def save(self, path: str | Path = "autoaccel.yaml") -> Path:
        """Write the config atomically; returns the path."""
        return save_config(self.config, path)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of the answer and its evidence."""
        return advice_dict(self)

    def summary(self, *, width: int = 110) -> str:
        """A readable report: baseline vs. best, what changed and why, the search."""
        return summary_text(self, width=width)

    def tables(self) -> list[Table]:
        """The summary as rich tables."""
        return advice_tables(self)
