"""Atomic file writes: a crash leaves the old file or the new one, never half of either."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

__all__ = ["atomic_write_text", "try_write"]

_PROBE_BYTES = 8 * 1024  # about two configs: what try_write writes and syncs


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so a crash leaves the old file or the new one, never half.

    The text goes to a temporary file in the same folder, is flushed to disk, then renamed
    over ``path`` (a rename within one file system is atomic). The file keeps the mode it
    had; a new one gets the usual 0644 under the umask (a temporary file's 0600 would make
    a config tuned as root unreadable to the user who trains).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below, then renamed)
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    """The permission bits ``path`` has, or those a new file gets under the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def try_write(folder: Path) -> None:
    """Create ``folder`` if needed and write, sync and remove a small file in it: a
    read-only folder or a full disk shows here, before any work depends on it.

    Raises:
        OSError: the folder cannot be written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".autoaccel-check-") as probe:
        probe.write(b"\0" * _PROBE_BYTES)
        probe.flush()
        os.fsync(probe.fileno())
