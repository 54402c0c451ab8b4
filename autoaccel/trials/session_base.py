"""What every script-side session shares, written once: a measuring trial and an LR range
test (``session.TrialSession``) and a loss-curve run (``curve_session.CurveSession``).

- the report: written once, by the rank that has something to say;
- rank 0 decides when every rank stops (broadcast under torchrun), so all leave at the same
  step;
- a crash in the script's own code still leaves a classified report, written by the rank
  that failed (under torchrun, "rank 1 of 2: ...") before its exit closes the sockets the
  others wait on;
- at exit, rank 0 says the script ended early, unless a report is there already: another
  rank that failed (out of memory, say) wrote why, and rank 0, which then saw only a broken
  connection, must not overwrite that.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
import torch.distributed as dist

from autoaccel.measure import classify_failure
from autoaccel.runtime.run import StepObserver
from autoaccel.states import Outcome
from autoaccel.trials.protocol import TrialReport, TrialSpec

__all__ = ["SessionBase"]


class SessionBase(StepObserver, ABC):
    """The lifecycle of a script-side session; subclasses say what they report.

    Args:
        spec: The tuner's spec for this run.
        report: The facts every report carries (``prepare``'s trial facts).
        rank: This process's rank; world: how many processes train.
        device: Where the flag that rank 0 broadcasts lives.
    """

    def __init__(
        self,
        spec: TrialSpec,
        report: dict[str, Any],
        *,
        rank: int,
        world: int,
        device: torch.device,
    ) -> None:
        self.spec, self.report = spec, report
        self.rank, self.world, self.device = rank, world, device
        self._written = False
        self._watch: threading.Timer | None = None
        self._previous_hook = sys.excepthook
        sys.excepthook = self._on_uncaught
        atexit.register(self._on_exit)

    # --- what a subclass says -----------------------------------------------------------

    @abstractmethod
    def _failed(self, outcome: Outcome, message: str) -> None:
        """Write the report of a run that failed with ``outcome``."""

    @abstractmethod
    def _ended_early(self) -> None:
        """Rank 0's report when the script ended on its own before the run was done."""

    # --- shared ---------------------------------------------------------------------------

    def _watch_for_a_step(self, limit_s: float) -> None:
        """End the script with a report that says why when no step ends within ``limit_s``
        of prepare(): a loop that never calls ``run.step()`` would otherwise wait out the
        tuner's whole timeout and be reported as one."""
        self._watch = threading.Timer(limit_s, self._no_step, args=(limit_s,))
        self._watch.daemon = True
        self._watch.start()

    def _stepped(self) -> None:
        """A step ended: the watch is over."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _no_step(self, limit_s: float) -> None:
        if self.rank == 0 and not self._written:
            self._failed(
                Outcome.ERROR,
                f"no training step ended in {limit_s:g} s after prepare(): the loop must call "
                "run.step() after each batch (or its first step takes longer than a trial may)",
            )
        os._exit(1)  # from the watch's thread: the script's own is stuck or not stepping

    def _write_report(self, **fields: Any) -> None:
        """Write this run's report (the spec's path) with ``fields`` and the common facts."""
        TrialReport(world_size=self.world, **{**self.report, **fields}).write(
            Path(self.spec.report_path)
        )
        self._written = True

    def _rank_0_decides(self, flag: bool) -> bool:
        """Rank 0's decision, for every rank: so all act (score, leave) at the same step."""
        if self.world <= 1:
            return flag
        said = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(said, src=0)
        return bool(said.item())

    def _another_rank_wrote(self) -> bool:
        return not self._written and Path(self.spec.report_path).exists()

    def _on_exit(self) -> None:
        if self.rank == 0 and not self._written and not self._another_rank_wrote():
            self._ended_early()

    def _on_uncaught(
        self, kind: type[BaseException], error: BaseException, tb: TracebackType | None
    ) -> None:
        """A crash in the script's own code, classified and written by the failing rank."""
        if not self._written and not self._another_rank_wrote() and isinstance(error, Exception):
            outcome, message = classify_failure(error)
            if self.world > 1:
                message = f"rank {self.rank} of {self.world}: {message}"
            self._failed(outcome, message)
        self._previous_hook(kind, error, tb)
