"""One study, several tuning workers: what they share through Optuna's RDB storage.

Workers on one or more machines run the same ``autoaccel tune ... --storage
postgresql://... --study NAME``. Everything they agree on lives in the database, through
Optuna's own API; nothing here talks to the database directly:

- **Heartbeats.** A shared storage is an ``RDBStorage`` with ``heartbeat_interval``: each
  worker beats for the trial it measures (``Heartbeat``), and before each decision
  ``optuna.storages.fail_stale_trials`` fails the trials of workers that stopped beating (a
  worker killed mid-trial), so their configs are free to be measured again, not lost.
- **No config measured twice.** A worker claims a config by asking for a trial with its
  params, then looks for another live claim on the same config (``taken_elsewhere``). Both
  claims are committed before either looks, so at least one of two racing workers sees the
  other, and a worker that sees another claim steps back (its trial is failed as a
  ``duplicate_of``, never measured).
- **One writer.** The end phase (final round, confirmation, the config file) is run by one
  worker: the first to create the study ``<study>:writer:<k>`` (study names are unique in
  the storage, so creating one is atomic). A claim made before this worker started belongs
  to an earlier run of the study, and the next ``k`` is tried.
- **One hardware.** Each trial records the worker and the hardware fingerprint it ran on; a
  worker ranks only trials measured on its own hardware, and says how many it left out.

SQLite stays the embedded default for one machine: it is not shared (Optuna advises
against SQLite for parallel writers), so none of this applies there.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import optuna
import psutil
from optuna.exceptions import DuplicatedStudyError
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import TrialState

__all__ = [
    "GRACE_S",
    "HEARTBEAT_S",
    "Heartbeat",
    "beat",
    "claim_end_phase",
    "fail_orphaned_trials",
    "is_shared",
    "open_storage",
    "taken_elsewhere",
    "worker_id",
]

HEARTBEAT_S = 2  # a measuring worker records a heartbeat this often
GRACE_S = 12  # a trial without a heartbeat for this long is failed (its worker is gone)
CLAIM_SKEW_S = 5.0  # machines' clocks (NTP) may differ by this much
WORKER_ATTR = "worker"
FINGERPRINT_ATTR = "hardware_fingerprint"
DUPLICATE_ATTR = "duplicate_of"
SOURCE_ATTR = "source"  # why the trial was run: baseline, guess, neighbour, sampler, ...
# A trial's source when it was recorded unmeasured: the guard could not write its config at
# the budget of the worker that judged it (another worker's budget may differ).
OUT_OF_REACH = "out of reach"


def is_shared(url: str) -> bool:
    """Whether a storage URL names a database server that several workers can share.

    Example:
        >>> is_shared("postgresql://tuner@db/studies"), is_shared("sqlite:///studies.db")
        (True, False)
    """
    return not url.startswith("sqlite")


def worker_id() -> str:
    """This tuning process as the study's trials name it: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_orphaned_trials(study: optuna.Study) -> list[int]:
    """Fail the trials a tuner on this machine left running when it was killed (SIGKILL,
    a power cut): their worker's process is gone, so nothing will finish them, and in an
    SQLite study (no heartbeats) they would stay "running" for ever. A trial of a tuner
    that still runs, or of another machine, is left alone.

    Returns:
        The numbers of the trials failed.
    """
    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        where, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
        if where == host and pid.isdigit() and not psutil.pid_exists(int(pid)):
            study.tell(trial.number, state=TrialState.FAIL)
            failed.append(trial.number)
    return failed


def open_storage(url: str) -> str | BaseStorage:
    """What ``optuna.create_study(storage=...)`` gets: the URL itself for SQLite, an
    ``RDBStorage`` with heartbeats for a shared database.

    Workers that start together may race to create Optuna's tables in an empty database
    (PostgreSQL then refuses one of the two ``CREATE TABLE``s); the loser tries again.
    """
    if not is_shared(url):
        return url
    attempt = 0
    while True:
        try:
            with quiet_experimental():
                return RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
        except Exception:  # SQLAlchemy's IntegrityError/ProgrammingError from the race
            attempt += 1
            if attempt == 3:
                raise
            time.sleep(0.5 * attempt)


def beat(storage: BaseStorage | str, trial: optuna.Trial) -> None:
    """One heartbeat for ``trial`` now (nothing for a storage without heartbeats)."""
    if isinstance(storage, RDBStorage) and storage.get_heartbeat_interval():
        with contextlib.suppress(Exception):  # a lost beat only risks a late FAIL
            storage.record_heartbeat(trial._trial_id)


class Heartbeat(contextlib.AbstractContextManager["Heartbeat"]):
    """Beats for one trial while it is measured (Optuna's ``optimize()`` does the same in
    a thread of its own; ``tune`` asks and tells, so it beats itself).

    Uses ``RDBStorage.record_heartbeat``; the trial's storage id is Optuna's private
    ``Trial._trial_id``, the one Optuna's own heartbeat thread is given.
    """

    def __init__(self, storage: BaseStorage | str, trial: optuna.Trial) -> None:
        self._storage = storage if isinstance(storage, RDBStorage) else None
        self._trial_id: int = trial._trial_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self._storage is not None and self._storage.get_heartbeat_interval():
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _beat(self) -> None:
        assert self._storage is not None
        while True:
            with contextlib.suppress(Exception):  # a lost beat only risks a late FAIL
                self._storage.record_heartbeat(self._trial_id)
            if self._stop.wait(HEARTBEAT_S):
                return


def taken_elsewhere(study: optuna.Study, trial: optuna.Trial, key_of: Any, key: str) -> int | None:
    """The number of another trial that claims the same config (``key``), or None.

    A claim is a running or finished trial that is not itself a step-back, nor a config
    another worker left unmeasured as out of its guard's reach (this worker judges it at its
    own budget); ``key_of`` maps a trial's params to the config key.
    """
    states = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
    for other in study.get_trials(deepcopy=False, states=states):
        attrs = other.user_attrs
        if other.number == trial.number or DUPLICATE_ATTR in attrs:
            continue
        if attrs.get(SOURCE_ATTR) == OUT_OF_REACH:
            continue
        if other.params and key_of(dict(other.params)) == key:
            return other.number
    return None


def claim_end_phase(
    storage: BaseStorage | str, study_name: str, worker: str, started_at: float
) -> str | None:
    """Claim the end phase of a shared study for this worker.

    Args:
        started_at: When this worker started (``time.time()``): a claim older than that
            belongs to an earlier run of the study.

    Returns:
        None when this worker won the claim (it runs the end phase and writes the config);
        else the worker that holds it.
    """
    for k in range(1000):
        name = f"{study_name}:writer:{k}"
        try:
            claim = optuna.create_study(study_name=name, storage=storage)
        except DuplicatedStudyError:
            held = optuna.load_study(study_name=name, storage=storage).user_attrs
            claimed_at = held.get("claimed_at")
            if claimed_at is None or claimed_at >= started_at - CLAIM_SKEW_S:
                return str(held.get(WORKER_ATTR, "another worker (claiming it now)"))
            continue  # an earlier run's claim
        claim.set_user_attr(WORKER_ATTR, worker)
        claim.set_user_attr("claimed_at", time.time())
        return None
    raise RuntimeError(f"study {study_name!r} holds 1000 writer claims")


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """``fail_stale_trials`` is marked experimental (since Optuna 2.9, and still is)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # ask/tell beats for itself (``Heartbeat``), which Optuna's warning does not know.
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield
