"""Secrets kept out of what autoaccel prints, logs and writes.

Two kinds reach autoaccel: a password in a storage URL
(``postgresql://user:pw@host/db``) and a script argument that carries a credential
(``--api-key sk-...``, ``--password=...``, ``TOKEN=...``). Both are masked as ``***``
wherever they are shown or stored: the terminal, ``--json``, trial logs, the config's
``provenance.command`` and the study's attributes. The real values still reach the code
that needs them (the storage connection, the script's own arguments).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

__all__ = ["MASK", "mask_args", "mask_command", "mask_url", "scrub", "secret_values"]

MASK = "***"

#: An argument name that says its value is a credential.
_SECRET_NAME = re.compile(r"(key|token|passw(or)?d|secret|credential|auth)", re.IGNORECASE)
#: ``scheme://user:password@host``: the password part.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<pw>[^@\s/]+)@")


def mask_url(url: str) -> str:
    """``url`` with its password (if any) masked.

    Example:
        >>> mask_url("postgresql://tuner:s3cret@db.example:5432/studies")
        'postgresql://tuner:***@db.example:5432/studies'
        >>> mask_url("sqlite:///.autoaccel/studies.db")
        'sqlite:///.autoaccel/studies.db'
    """
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", url)


def mask_args(args: Sequence[str]) -> list[str]:
    """Script arguments with credential values masked: the value after (or ``=`` in) an
    option whose name says key, token, password, secret, credential or auth, and any
    password in a URL.

    Example:
        >>> mask_args(["--epochs", "3", "--api-key", "sk-123", "--db-password=pw", "TOKEN=t"])
        ['--epochs', '3', '--api-key', '***', '--db-password=***', 'TOKEN=***']
    """
    masked: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            masked.append(MASK)
            hide_next = False
            continue
        name, equals, _ = arg.partition("=")
        if equals and _SECRET_NAME.search(name):
            masked.append(f"{name}={MASK}")
        elif arg.startswith("-") and _SECRET_NAME.search(arg):
            masked.append(arg)
            hide_next = True
        else:
            masked.append(mask_url(arg))
    return masked


def mask_command(command: Sequence[str]) -> str:
    """A command line for people and logs, shell-quoted, with its secrets masked.

    Example:
        >>> mask_command(["python", "train.py", "--token", "abc", "--name", "my run"])
        "python train.py --token '***' --name 'my run'"
    """
    return shlex.join(mask_args(command))


def secret_values(args: Sequence[str]) -> list[str]:
    """The credential values among ``args`` (what ``mask_args`` hides), longest first.

    Example:
        >>> secret_values(["--api-key", "sk-123", "--lr", "0.1", "--password=pw"])
        ['sk-123', 'pw']
    """
    found = set()
    for arg, masked in zip(args, mask_args(args), strict=True):
        if arg != masked:
            name, equals, value = arg.partition("=")
            found.add(value if equals and masked.startswith(f"{name}=") else arg)
            found.update(m["pw"] for m in _URL_PASSWORD.finditer(arg))
    return sorted((v for v in found if v), key=len, reverse=True)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every one of ``secrets`` masked: for what a script printed (a log's
    last lines in a message, a trial's error in the study).

    Example:
        >>> scrub("error: unrecognized arguments: --api-key sk-123", ["sk-123"])
        'error: unrecognized arguments: --api-key ***'
    """
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text
