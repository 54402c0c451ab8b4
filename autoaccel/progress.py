"""A progress bar for long work, on stderr: the phase, the budget spent and left.

``autoaccel tune`` and ``advise()`` run phases that each take from a few seconds to
minutes: the baseline, the search, the final round, the confirmation, the schedule study and
the LR range test. ``Phases`` shows one live line under the per-trial lines, for example
``search  ━━━━━━╺━━━━  95 s of 240 s left``. The bar follows the ``Budget``, so it moves
during a long trial too. With no console (``--json``, ``--quiet``,
``advise(progress=False)``) it shows nothing. On a console that is not a terminal it prints
one plain line per phase instead.
"""

from __future__ import annotations

import re
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn
from rich.text import Text

from autoaccel.budget import Budget

__all__ = ["Phases", "plain_console"]


def plain_console(**options: Any) -> Console:
    """A rich ``Console`` that prints every string as it is: text from a script, a library
    or the user (a gloo error's ``[/path/pair.cc:553]``, a script named ``[b].py``) is
    never read as markup, in lines and table cells alike, and its control characters (a
    config's terminal escape sequences) are shown as ``\\x1b``, never sent to the terminal.
    Styles come from ``Text`` and ``style=`` instead.

    Example:
        >>> console = plain_console(record=True, file=__import__("io").StringIO())
        >>> console.print("closing tag [/tcp/pair.cc:553] \x1b[2J kept"); console.export_text()
        'closing tag [/tcp/pair.cc:553] \\\\x1b[2J kept\\n'
    """
    return _PlainConsole(markup=False, **options)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class _PlainConsole(Console):
    def render_str(self, text: str, **options: Any) -> Text:
        shown = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
        return super().render_str(shown, **options)


class _BudgetLeft(ProgressColumn):
    """The budget left, read live from the ``Budget`` (so it counts down during a trial)."""

    def __init__(self, budget: Budget) -> None:
        super().__init__()
        self.budget = budget

    def render(self, task: Task) -> Text:
        left = max(0.0, self.budget.given_s - self.budget.spent_s())
        return Text(f"{left:.0f} s of {self.budget.given_s:g} s left", style="cyan")


class _BudgetBar(BarColumn):
    """The bar: the part of the budget spent, read live."""

    def __init__(self, budget: Budget) -> None:
        super().__init__(bar_width=30)
        self.budget = budget

    def render(self, task: Task) -> Any:
        task.completed = min(self.budget.spent_s(), self.budget.given_s)
        task.total = self.budget.given_s
        return super().render(task)


class Phases:
    """The current phase of a tuning run, shown with the budget.

    Example:
        >>> budget = Budget(60)
        >>> with Phases(None, budget) as phases:   # no console: shows nothing
        ...     phases.enter("search")
        >>> phases.entered
        ['search']
    """

    def __init__(self, console: Console | None, budget: Budget) -> None:
        self.console = console
        self.budget = budget
        self.entered: list[str] = []
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> Phases:
        if self.console is not None and self.console.is_terminal:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}", style="bold", markup=False),
                _BudgetBar(self.budget),
                _BudgetLeft(self.budget),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("starting", total=self.budget.given_s)
        return self

    def enter(self, phase: str) -> None:
        """The run moves on to ``phase``."""
        self.entered.append(phase)
        if self._progress is not None:
            self._progress.update(self._task, description=phase)
        elif self.console is not None:  # not a terminal: one plain line per phase
            left = max(0.0, self.budget.given_s - self.budget.spent_s())
            say(self.console, f"{phase} ({left:.0f} s of {self.budget.given_s:g} s left)")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()


def say(console: Console | None, text: str, *, tag: str = "autoaccel: ") -> None:
    """One progress line, ``autoaccel: text`` (a trial's line has no tag), printed as
    written (no rich markup: a failure's reason can quote ``[...]``); nothing when there is
    no console. Every progress line goes through here."""
    if console:
        console.print(f"{tag}{text}", highlight=False, markup=False, soft_wrap=True)
