"""Errors raised by autoaccel.

Every error autoaccel raises on purpose derives from :class:`AutoaccelError`, and also from
the builtin that fits, so callers can catch either::

    AutoaccelError (Exception)
    ├── UsageError (ValueError)        bad input from the caller: exit code 2 in the CLI
    │   ├── ConfigError                a config file or TrainingConfig that is not valid
    │   └── DataError                  data, model or loss that cannot be trained as given
    └── TrialError (RuntimeError)      a measurement that could not be completed: exit code 1

    Interrupted (KeyboardInterrupt)    SIGTERM or SIGHUP, handled as Ctrl-C: exit 128 + N

The CLI prints ``str(error)`` on one line; messages say what was expected, what was got and
how to fix it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = [
    "AutoaccelError",
    "ConfigError",
    "DataError",
    "Interrupted",
    "TrialError",
    "UsageError",
    "disk_full",
    "interrupts_from_signals",
]


class AutoaccelError(Exception):
    """Base of every error autoaccel raises on purpose."""

    exit_code = 1


class UsageError(AutoaccelError, ValueError):
    """The caller asked for something that cannot be done as given."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration that is not valid; ``problems`` lists every one found, the message
    the first ``SHOWN`` of them (a file wrong in 24 places reads as a line, not a page).

    Args:
        problems: One entry per problem, each naming its key path.
        source: Where the config came from (a file path), if from a file.

    Example:
        >>> str(ConfigError([f"k{i}: bad" for i in range(9)], source="a.yaml"))
        'a.yaml: 9 problems: k0: bad; k1: bad; k2: bad; k3: bad; k4: bad; k5: bad; and 3 more'
    """

    SHOWN = 6

    def __init__(self, problems: list[str] | str, *, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        if len(self.problems) == 1:
            message = f"{where}{self.problems[0]}"
        else:
            shown = self.problems[: self.SHOWN]
            more = len(self.problems) - len(shown)
            message = f"{where}{len(self.problems)} problems: " + "; ".join(
                shown + ([f"and {more} more"] if more else [])
            )
        super().__init__(message)


class DataError(UsageError):
    """The model, data or loss cannot be trained as given."""


class TrialError(AutoaccelError, RuntimeError):
    """A measurement or trial could not be completed."""


#: How a full disk shows in an OS error, SQLite's or a script's output.
DISK_FULL_WORDS = ("no space left on device", "database or disk is full", "disk quota exceeded")


def disk_full(error: BaseException | str) -> str | None:
    """One line saying the disk is full, when ``error`` (or what caused it, or a script's
    output) says so; None otherwise.

    Example:
        >>> disk_full(OSError(28, "No space left on device"))[:46]
        'the disk is full (No space left on device): fr'
        >>> disk_full(ValueError("x")) is None
        True
    """
    seen: list[str] = []
    current: BaseException | str | None = error
    while current is not None and len(seen) < 8:
        text = str(current)
        seen.append(text)
        for words in DISK_FULL_WORDS:
            at = text.lower().find(words)
            if at >= 0:
                quoted = text[at : at + len(words)]
                return (
                    f"the disk is full ({quoted}): free space where autoaccel writes (its "
                    "study, trial logs, the config) and run it again; a tune resumes its study"
                )
        if isinstance(current, str):
            break
        current = current.__cause__ or current.__context__
    return None


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP), raised like Ctrl-C so that every ``except
    KeyboardInterrupt`` cleans up the same way (a trial's process group killed, the best
    config kept); ``signum`` gives the exit code 128 + N."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


@contextlib.contextmanager
def interrupts_from_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise ``Interrupted`` while inside (main thread only; the old
    handlers come back after)."""
    stops = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, stop) for signum in stops}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C inside waits until the block ends, then raises ``KeyboardInterrupt``: torch's
    C++ start-up aborts the process ("terminate called ... KeyboardInterrupt", exit -6)
    when a KeyboardInterrupt meets it (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt
