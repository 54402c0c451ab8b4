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
from typing import Any

__all__ = ["MASK", "mask_args", "mask_command", "mask_url", "scrub", "secret_values"]

MASK = "***"

#: An argument name that says its value is a credential: one that ends in the word key,
#: token, password, secret, credential(s) or auth (``--api-key``, ``HF_TOKEN``,
#: ``db_password``), not one that only contains it (``--max-tokens``, ``--use-auth-cache``).
_SECRET_NAME = re.compile(
    r"(^|[-_.])(key|token|passw(or)?d|pwd|secret|credentials?|auth)$", re.IGNORECASE
)
#: ``scheme://user:password@host``: the password part.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<pw>[^@\s/]+)@")


def mask_url(url: str) -> str:
    """``url`` with every credential in it masked: the password (also one holding ``/`` or
    a space) and credential-named query parameters (``?password=...``), read by SQLAlchemy's
    URL parser, the one the storage connects with.

    Example:
        >>> mask_url("postgresql://tuner:s3cret@db.example:5432/studies")
        'postgresql://tuner:***@db.example:5432/studies'
        >>> mask_url("postgresql://tuner:pa/ss word@db/studies?password=x&sslmode=require")
        'postgresql://tuner:***@db/studies?password=***&sslmode=require'
        >>> mask_url("sqlite:///.autoaccel/studies.db")
        'sqlite:///.autoaccel/studies.db'
    """
    parsed = _parsed(url)
    if parsed is None:
        return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", url)
    secret_keys = [k for k in parsed.query if _SECRET_NAME.search(k)]
    if parsed.password is None and not secret_keys:
        return url  # nothing to hide: the text as the user wrote it
    shown = parsed.set(
        query={k: ("MASKED" if k in secret_keys else v) for k, v in parsed.query.items()}
    )
    return shown.render_as_string(hide_password=True).replace("MASKED", MASK)


def _parsed(url: str) -> Any:
    """SQLAlchemy's reading of a ``scheme://`` URL, or None for anything else."""
    if "://" not in url:
        return None
    from sqlalchemy.engine import make_url  # only when there is a URL: a quick CLI start

    try:
        return make_url(url)
    except Exception:  # not a URL SQLAlchemy reads: the pattern above masks what it can
        return None


def _url_secrets(url: str) -> list[str]:
    """The credentials ``mask_url`` hides in ``url``."""
    parsed = _parsed(url)
    if parsed is None:
        return [m["pw"] for m in _URL_PASSWORD.finditer(url)]
    found = [parsed.password] if parsed.password else []
    for key, value in parsed.query.items():
        if _SECRET_NAME.search(key):
            found += [value] if isinstance(value, str) else list(value)
    return found


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
        if equals and _SECRET_NAME.search(name.lstrip("-")):
            masked.append(f"{name}={MASK}")
        elif arg.startswith("-") and _SECRET_NAME.search(arg.lstrip("-")):
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
            found.update(_url_secrets(arg))
    return sorted((v for v in found if v), key=len, reverse=True)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every one of ``secrets`` masked where it stands as a whole token: for
    what a script printed (a log's last lines in a message, a trial's error in the study).

    Example:
        >>> scrub("error: unrecognized arguments: --api-key sk-123", ["sk-123"])
        'error: unrecognized arguments: --api-key ***'
        >>> scrub("key abc; abcd is not it", ["abc"])
        'key ***; abcd is not it'
    """
    for secret in secrets:
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", MASK, text)
    return text
