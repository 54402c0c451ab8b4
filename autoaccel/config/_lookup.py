"""Which ``autoaccel.yaml`` a run uses: one lookup for ``prepare()``, ``autoaccel run``,
``autoaccel show`` and ``autoaccel lr-find``.

The order, first match wins:

1. the file named explicitly (``prepare(config=...)``, ``--config PATH``, ``show PATH``);
2. ``$AUTOACCEL_CONFIG`` (``autoaccel run`` sets it to the file it found);
3. ``autoaccel.yaml`` beside the training script (where ``autoaccel tune`` writes it);
4. ``autoaccel.yaml`` in the working directory.

So ``python train.py`` and ``autoaccel run train.py`` pick the same file from any folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from autoaccel.errors import ConfigError

__all__ = ["CONFIG_ENV", "CONFIG_NAME", "find_config"]

#: Names the config file of a normal run (``autoaccel run`` sets it).
CONFIG_ENV = "AUTOACCEL_CONFIG"
#: The file ``autoaccel tune`` writes beside a script, and the lookup's default name.
CONFIG_NAME = "autoaccel.yaml"


def find_config(
    named: str | os.PathLike[str] | None = None,
    *,
    script: str | os.PathLike[str] | None = None,
    origin: str = "config=",
) -> Path | None:
    """The config file for a run (see the module's docstring for the order); None when
    there is none.

    Args:
        named: A path given explicitly.
        script: The training script (``prepare()`` passes the running one,
            ``sys.argv[0]``); None when there is none (``autoaccel show``).
        origin: How ``named`` was given, for the message (``config=``, ``--config``).

    Raises:
        ConfigError: ``named`` or ``$AUTOACCEL_CONFIG`` names a file that does not exist,
            or a directory.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "autoaccel.yaml").write_text("batch_size: 64")
        >>> find_config(script=folder / "train.py") == folder / "autoaccel.yaml"
        True
    """
    for path, given_as in ((named, origin), (os.environ.get(CONFIG_ENV), f"${CONFIG_ENV}")):
        if path:
            found = Path(path)
            if found.is_dir():
                raise ConfigError(
                    f"{given_as} names {found}, which is a directory; name the config file "
                    f"in it (e.g. {found / CONFIG_NAME})"
                )
            if not found.is_file():
                raise ConfigError(
                    f"{given_as} names {found}, which does not exist; write it with "
                    "`autoaccel tune` or fix the path"
                )
            return found
    folders = [Path(script).resolve().parent] if script else []
    folders.append(Path.cwd())
    for folder in folders:
        if (folder / CONFIG_NAME).is_file():
            return folder / CONFIG_NAME
    return None
