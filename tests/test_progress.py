"""The progress bar: the phase and the budget left, live on a terminal, a line per phase
elsewhere, nothing without a console."""

from __future__ import annotations

import io
import time

from rich.console import Console

from autoaccel.budget import Budget
from autoaccel.progress import Phases


def test_a_terminal_shows_the_phase_and_the_budget_left_live() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    budget = Budget(60)
    with Phases(console, budget) as phases:
        phases.enter("search")
        time.sleep(0.3)  # the bar refreshes by itself, during a long trial too
        console.print("trial #1 ...", highlight=False)
    shown = screen.getvalue()
    assert "search" in shown and "s of 60 s left" in shown
    assert "trial #1" in shown


def test_elsewhere_one_plain_line_per_phase() -> None:
    log = io.StringIO()
    budget = Budget(60)
    with Phases(Console(file=log, force_terminal=False), budget) as phases:
        phases.enter("baseline")
        phases.enter("search")
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("autoaccel: baseline (") and lines[0].endswith("s of 60 s left)")
    assert lines[1].startswith("autoaccel: search (")
    assert phases.entered == ["baseline", "search"]
