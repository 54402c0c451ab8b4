"""Where ``autoaccel tune`` writes, checked before the first trial, and written so the
result survives: the config (``--out``), the trial folders and one tune per config at once.

A bad ``--out`` (the script itself, a file that is not an autoaccel config, a directory, a
read-only folder, a full disk) is refused before any trial, not found after the search. If
the final write still fails, the config goes to a fallback file and to stderr.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from autoaccel.atomic import try_write
from autoaccel.config import TrainingConfig, load_config, render_yaml, save_config
from autoaccel.errors import ConfigError, TrialError, UsageError

__all__ = [
    "CONFIG_HEADER",
    "check_out",
    "check_replaceable",
    "check_writable_folder",
    "one_tune_per_config",
    "save_or_keep",
]

#: The first line of every config autoaccel writes: what ``--out`` may replace.
CONFIG_HEADER = "# autoaccel training config"


def check_out(out: Path, script: Path) -> Path:
    """Refuse an ``--out`` the config cannot or must not be written to; the path to write:
    a symlink's target (the config it points to is the one updated, atomically beside it;
    the link stays a link).

    Raises:
        UsageError: ``out`` is the script, a directory, a device or other special file, an
            existing file that is not an autoaccel config, or in a folder that cannot be
            written (read-only, full, a file).
    """
    if out.resolve() == script.resolve():
        raise UsageError(
            f"--out {out} is the training script itself; name a config file, e.g. "
            f"--out {script.parent / 'autoaccel.yaml'}"
        )
    check_replaceable(out, ours=_is_config, kind="config", name="autoaccel.yaml")
    return out.resolve() if out.is_symlink() else out


def check_replaceable(out: Path, *, ours: Callable[[Path], bool], kind: str, name: str) -> None:
    """Refuse an ``--out`` that names something autoaccel must not replace with its
    ``kind`` of file: a directory, a device or other special file, a path below a file, or
    an existing file that is not one autoaccel wrote (``ours``); and one whose folder cannot
    be written.

    Raises:
        UsageError: one line naming ``out``, what it is, and a name that would do (``name``).
    """
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; name a file in it, e.g. {out / name}")
    if out.exists() and not out.is_file():
        raise UsageError(
            f"--out {out} is a device or other special file, not replaced; name a regular "
            f"file, e.g. --out {name}"
        )
    if any(p.exists() and not p.is_dir() for p in out.parents):
        raise UsageError(f"--out {out} is below a file, not a folder; name a file in a folder")
    if out.exists() and not ours(out):
        raise UsageError(
            f"--out {out} exists and is not an autoaccel {kind}, so it is not replaced; "
            "name another file, or move that one away"
        )
    check_writable_folder(out.parent, what=f"--out {out}")


def check_writable_folder(folder: Path, *, what: str) -> None:
    """Create ``folder`` if needed and write (and sync) a small file in it.

    Raises:
        UsageError: naming ``what`` needs the folder and why it cannot be written.
    """
    try:
        try_write(folder)
    except OSError as error:
        raise UsageError(
            f"{what}: cannot write in {folder} ({error.strerror or error}); choose a writable place"
        ) from None


def _is_config(path: Path) -> bool:
    """Whether ``path`` is a config autoaccel may replace: its header, or a valid config."""
    try:
        with path.open("rb") as handle:
            if handle.read(len(CONFIG_HEADER)).decode(errors="replace") == CONFIG_HEADER:
                return True
        load_config(path)
    except (OSError, ConfigError):
        return False
    return True


def save_or_keep(config: TrainingConfig, out: Path, *, stem: str) -> Path:
    """Write the final config to ``out``; if that fails, to a fallback file and stderr.

    Raises:
        TrialError: ``out`` could not be written, naming where the config is instead.
    """
    try:
        return save_config(config, out)
    except OSError as error:
        reason = error.strerror or str(error)
    fallback = (
        Path(tempfile.gettempdir()) / f"autoaccel-{stem}-{time.strftime('%Y%m%d-%H%M%S')}.yaml"
    )
    sys.stderr.write(render_yaml(config, name=str(out)))
    try:
        save_config(config, fallback)
        kept = f"saved to {fallback} and printed above"
    except OSError:
        kept = "printed above"
    raise TrialError(
        f"could not write the tuned config to {out} ({reason}); it was {kept}: copy it into place"
    )


@contextlib.contextmanager
def one_tune_per_config(out: Path, state_dir: Path) -> Iterator[None]:
    """Hold a lock for ``out`` while a tune writes it; a second tune of the same config is
    refused with who holds it (POSIX ``flock``; released when the process ends, even killed).

    Raises:
        UsageError: another tune is writing ``out`` now.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield
        return
    key = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:16]
    folder = state_dir / "locks"
    check_writable_folder(folder, what="the tune's lock")
    with contextlib.suppress(OSError):  # private where it is ours (not someone else's)
        if folder.stat().st_uid == os.getuid() and not folder.is_symlink():
            folder.chmod(0o700)
    path = folder / f"{key}.lock"
    handle = _open_lock(path)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UsageError(
                f"another autoaccel tune ({holder}) is writing {out} now; wait for it to "
                "end, or give this one another --out (and --study to keep the studies apart)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, started {time.strftime('%H:%M:%S')}")
        handle.flush()
        yield
    finally:
        handle.close()


def _open_lock(path: Path) -> Any:
    """The lock file, opened without following a symlink planted at its name, and only
    when it is a regular file of this user (so writing our pid into it harms nothing).

    Raises:
        UsageError: something else stands at the lock's name, naming it and the fix.
    """
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags, 0o600)
    except OSError as error:
        raise UsageError(
            f"the tune's lock {path} cannot be opened ({error.strerror or error}: a symlink or "
            "another file stands there); remove it and tune again"
        ) from None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
        os.close(descriptor)
        raise UsageError(
            f"the tune's lock {path} is not a regular file of yours; remove it and tune again"
        )
    return os.fdopen(descriptor, "r+")
