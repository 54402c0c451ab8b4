from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from autoaccel.config import CONFIG_ENV
from autoaccel.process import preserved_process_state


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test runs in an empty folder (no autoaccel.yaml there, nor beside sys.argv[0]),
    and prepare()'s process-wide settings are undone afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setattr("sys.argv", [str(tmp_path / "train.py")])
    with preserved_process_state():
        yield
