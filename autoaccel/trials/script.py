"""Script trials: run a training script once per candidate config, in its own process group.

Each trial gets a folder under ``.autoaccel/trials/`` with its spec, the script's combined
stdout/stderr (``log.txt``) and, when the script got that far, its report. A trial that
runs past its timeout is killed with its whole process group (torchrun and DataLoader
workers included); one that crashes or runs out of memory is classified from its report
or, failing that, from the tail of its log. Nothing a script does stops the search.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from autoaccel.config import TrainingConfig
from autoaccel.errors import UsageError, disk_full
from autoaccel.measure import Measurement, MeterSettings, classify_failure
from autoaccel.redact import mask_command, scrub, secret_values
from autoaccel.states import Outcome
from autoaccel.trials.protocol import TRIAL_ENV, CurveSpec, TrialReport, TrialSpec

__all__ = [
    "INTEGRATION_LINES",
    "ScriptRunner",
    "ScriptTrial",
    "check_script",
    "ended_early",
    "launch_command",
]

INTEGRATION_LINES = """\
    import autoaccel
    run = autoaccel.prepare(model, optimizer, train_dataset,
                            loader_kwargs={"batch_size": 32, "shuffle": True})
    for x, y in run.loader:
        with run.autocast():
            loss = loss_fn(run.model(x), y)
        run.backward(loss)
        run.step()"""

LOG_TAIL_LINES = 15


def check_script(script: Path) -> str:
    """Refuse a script that cannot be tuned, before any trial; returns its source.

    Raises:
        UsageError: it does not exist, is not Python, or never calls ``prepare()``.
    """
    if not script.exists():
        raise UsageError(
            f"{script} does not exist; give the path of your training script, "
            "e.g. `autoaccel tune train.py`"
        )
    if script.is_dir() or script.suffix != ".py":
        raise UsageError(
            f"{script} is not a Python file (.py); autoaccel tunes Python training scripts"
        )
    source = script.read_text(errors="replace")
    try:
        ast.parse(source, filename=str(script))
    except SyntaxError as error:
        raise UsageError(
            f"{script} is not valid Python (line {error.lineno}: {error.msg}); "
            "fix it so `python script.py` runs"
        ) from None
    if not any(use in source for use in ("prepare(", "autoaccel.lightning", "autoaccel.hf")):
        raise UsageError(
            f"{script} never calls autoaccel.prepare(), so its trials cannot be measured; "
            f"add these lines (see docs/integration.md):\n{INTEGRATION_LINES}\n"
            "or, with Lightning or Hugging Face, train with autoaccel.lightning.Trainer(...) "
            "or autoaccel.hf.Trainer(...) in place of their Trainer(...)"
        )
    return source


def ended_early(trial: ScriptTrial, script: Path) -> UsageError:
    """What happened to a script that never reached ``prepare()``, as the error to raise:
    stopped by the trial timeout, killed by a signal, failed with its own error, or ended
    without calling ``prepare()``; with the log's path and its last lines."""
    log = f"log: {trial.log_path}"
    tail = trial.log_tail()
    last = f"\nlast lines of the log:\n{tail}" if tail else ""
    if trial.timed_out:
        what = (
            f"{script.name} was stopped by the trial timeout before reaching "
            f"autoaccel.prepare() ({log}); it may wait for input or data before training; "
            "if it is only slow to start, raise --trial-timeout"
        )
    elif trial.returncode is not None and trial.returncode < 0:
        name = signal.Signals(-trial.returncode).name
        what = f"{script.name} was killed by {name} before reaching autoaccel.prepare() ({log})"
    elif trial.returncode:
        lines = [line for line in tail.splitlines() if line.strip()]
        error = lines[-1].strip() if lines else "no output"
        what = (
            f"{script.name} failed before reaching autoaccel.prepare() (exit code "
            f"{trial.returncode}: {error}); fix it so that `python {script.name}` runs ({log})"
        )
    else:
        what = (
            f"{script.name} ended without reaching autoaccel.prepare() ({log}); call it "
            f"before training, e.g.:\n{INTEGRATION_LINES}"
        )
    return UsageError(what + last)


def launch_command(
    script: Path,
    args: tuple[str, ...],
    processes: int,
    python: str = sys.executable,
    *,
    nodes: int = 1,
    endpoint: str | None = None,
    rendezvous_id: str = "autoaccel",
) -> list[str]:
    """``python script.py args`` or, for several processes, the same under torchrun: on
    this machine alone (``--standalone``), or on each of ``nodes`` machines that meet at
    the c10d rendezvous ``endpoint`` (``HOST:PORT`` of one of them).

    Example:
        >>> command = launch_command(Path("t.py"), (), 2, "python", nodes=2, endpoint="n1:29400")
        >>> command[3:6]
        ['--nnodes=2', '--nproc-per-node=2', '--rdzv-backend=c10d']
        >>> command[6:]
        ['--rdzv-endpoint=n1:29400', '--rdzv-id=autoaccel', 't.py']
    """
    if nodes > 1:
        assert endpoint, "several nodes meet at a rendezvous endpoint"
        where = [
            f"--nnodes={nodes}",
            f"--nproc-per-node={processes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}",
            f"--rdzv-id={rendezvous_id}",
        ]
    elif processes > 1:
        where = ["--standalone", f"--nproc-per-node={processes}"]
    else:
        return [python, str(script), *args]
    return [python, "-m", "torch.distributed.run", *where, str(script), *args]


@dataclass(frozen=True)
class ScriptTrial:
    """One script trial: what it measured, what it reported, where its log is."""

    measurement: Measurement
    report: TrialReport | None
    log_path: Path
    reached_prepare: bool
    returncode: int | None
    timed_out: bool = False
    secrets: tuple[str, ...] | list[str] = ()  # the script's credential arguments, masked
    folder: Path | None = None  # the trial's folder (spec, log, report, points)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return scrub("\n".join(text.rstrip().splitlines()[-lines:]), self.secrets)


class ScriptRunner:
    """Runs one training script as trials.

    Args:
        script: The training script.
        args: Its arguments.
        trials_dir: Where each trial's folder goes.
        settings: Warm-up and window lengths, handed to the script.
        timeout_s: A trial still running after this long is killed.
        python: The interpreter to run the script with.
    """

    def __init__(
        self,
        script: Path,
        args: tuple[str, ...],
        *,
        trials_dir: Path,
        settings: MeterSettings,
        timeout_s: float,
        python: str = sys.executable,
    ) -> None:
        self.script = script
        self.args = args
        # absolute: a script may change directory before prepare() writes its report
        self.trials_dir = trials_dir.resolve()
        self.settings = settings
        self.timeout_s = timeout_s
        self.python = python
        self.count = 0
        self.secrets = secret_values(args)  # masked in what a trial's output shows

    def _folder(self) -> Path:
        """A new folder for one trial, private to the user (0700): its log holds the
        script's output and arguments. Created atomically, so two runners never share one."""
        self.trials_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        while True:
            folder = self.trials_dir / f"{self.count:04d}"
            self.count += 1
            try:
                folder.mkdir(mode=0o700)
            except FileExistsError:
                continue
            return folder

    def run(
        self,
        config: TrainingConfig | None,
        *,
        prune_below: float = 0.0,
        lr_sweep: dict[str, Any] | None = None,
        curve: Callable[[Path], CurveSpec] | None = None,
        metric: str | None = None,
        stop_when: Callable[[Path], bool] | None = None,
        timeout_s: float | None = None,
    ) -> ScriptTrial:
        """One trial; ``config=None`` runs the script's own settings (the baseline).

        With ``lr_sweep`` (RangeSweep's arguments) the script runs an LR range test instead
        of a measured trial, and its report carries the curve.

        Args:
            curve: Makes the loss-curve spec from the trial's folder: the script trains and
                reports its loss curve (``autoaccel.trials.curve_session``) instead.
            metric: The evaluate hook's entry scored as the metric.
            stop_when: Polled with the trial's folder while the script runs; True stops it
                (its process group), and the trial counts as ``stopped``.
            timeout_s: This trial's timeout (default: the runner's).
        """
        folder = self._folder()
        spec = TrialSpec(
            config=(config or TrainingConfig()).to_dict(),
            baseline=config is None,
            settings=asdict(self.settings),
            started_path=str(folder / "started"),
            report_path=str(folder / "report.json"),
            prune_below_samples_per_s=prune_below,
            lr_sweep=lr_sweep,
            curve=asdict(curve(folder)) if curve is not None else None,
            metric=metric,
        )
        spec_path = folder / "spec.json"
        spec.write(spec_path)
        log_path = folder / "log.txt"
        processes = config.processes if config is not None else 1
        command = launch_command(self.script, self.args, processes, self.python)
        env = {**os.environ, TRIAL_ENV: str(spec_path.resolve()), "PYTHONUNBUFFERED": "1"}
        returncode: int | None = None
        timed_out = stopped = False
        limit_s = timeout_s if timeout_s is not None else self.timeout_s
        with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as log:
            log.write("$ " + mask_command(command) + "\n")
            log.flush()
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent(),
            )
            try:
                returncode, stopped = _wait(process, limit_s, stop_when, folder)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(process)
            except BaseException:  # Ctrl-C: never leave a trial running behind us
                _kill_group(process)
                raise
            finally:
                ended = _kill_group(process)  # workers or torchrun children left behind
                _sweep(env[TRIAL_ENV], ended)  # and what left the group and the tree
        trim_log(log_path)
        reached = Path(spec.started_path).exists()
        report_path = Path(spec.report_path)
        report = TrialReport.read(report_path) if report_path.exists() else None
        if report is not None:
            report = _scrubbed(report, self.secrets)
            measurement = report.to_measurement()
        elif timed_out:
            measurement = Measurement(
                outcome=Outcome.TIMEOUT,
                message=f"killed after the {limit_s:g} s trial timeout (with its process group)",
            )
        else:
            measurement = _from_log(log_path, returncode)
        measurement = replace(measurement, message=scrub(measurement.message, self.secrets))
        if stopped and report is None:
            measurement = Measurement(outcome=Outcome.PRUNED, message="stopped by the tuner")
        return ScriptTrial(
            measurement, report, log_path, reached, returncode, timed_out, self.secrets, folder
        )


#: What a trial's log keeps: its first lines (the command) and its last ones (the error).
LOG_HEAD_BYTES = 16 * 1024
LOG_TAIL_BYTES = 1024 * 1024


def trim_log(path: Path) -> None:
    """Cut a trial's log that grew past its head and tail to just those, with the number
    of bytes cut between them (a script that prints every step wrote 58 MB in one tune).

    Example:
        >>> import tempfile
        >>> log = Path(tempfile.mkdtemp()) / "log.txt"
        >>> _ = log.write_text("$ cmd" + "x" * (3 * 2**20) + "the error")
        >>> trim_log(log); log.stat().st_size < 2**21, log.read_text().endswith("the error")
        (True, True)
    """
    size = path.stat().st_size
    if size <= LOG_HEAD_BYTES + LOG_TAIL_BYTES:
        return
    with path.open("rb") as handle:
        head = handle.read(LOG_HEAD_BYTES)
        handle.seek(size - LOG_TAIL_BYTES)
        tail = handle.read()
    cut = size - len(head) - len(tail)
    marker = f"\n[... autoaccel cut {cut:,} bytes of this log here ...]\n".encode()
    temporary = path.with_name(f".{path.name}.trim")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "wb") as out:
        out.write(head + marker + tail)
    os.replace(temporary, path)


def _scrubbed(report: TrialReport, secrets: list[str]) -> TrialReport:
    """``report`` with the secrets masked in every text the script's code wrote into it
    (the hook's error message, the notes), as in its measurement's message."""
    if not secrets:
        return report
    hook_error = scrub(report.hook_error, secrets) if report.hook_error else report.hook_error
    notes = [scrub(note, secrets) for note in report.notes]
    return replace(report, hook_error=hook_error, notes=notes)


POLL_S = 0.2  # how often a running trial's stop_when is asked


def _wait(
    process: subprocess.Popen[bytes],
    limit_s: float,
    stop_when: Callable[[Path], bool] | None,
    folder: Path,
) -> tuple[int | None, bool]:
    """Wait for the script: (return code, whether ``stop_when`` stopped it).

    Raises:
        subprocess.TimeoutExpired: it ran past ``limit_s``.
    """
    if stop_when is None:
        return process.wait(timeout=limit_s), False
    deadline = time.monotonic() + limit_s
    while True:
        try:
            return process.wait(timeout=min(POLL_S, max(0.0, deadline - time.monotonic()))), False
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                raise
        if stop_when(folder):
            _kill_group(process)
            return process.returncode, True


def _die_with_parent() -> Callable[[], None] | None:
    """What the trial's process runs before the script: on Linux, a request to the kernel
    for SIGTERM when autoaccel dies (even by SIGKILL), so no trial outlives its tuner.
    torchrun passes the SIGTERM on to its ranks; DataLoader workers follow their parent.
    The C library is looked up here, in the parent: the child only makes the call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def _kill_group(process: subprocess.Popen[bytes]) -> set[int]:
    """Stop the trial's whole process group: TERM, a grace period, then KILL; the pids of
    the script and the descendants it had.

    ``start_new_session=True`` made the script its group's leader, so the group id is its
    pid, even after the leader has exited and left workers or torchrun children behind.
    """
    pgid = process.pid
    # torchrun starts each rank in a session of its own, out of reach of the group's
    # signal: they are found as descendants first, and whatever outlives the group goes.
    descendants = _descendants(process.pid)
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # nobody left in the group; a rank may still be
    else:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=3.0)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    process.wait()
    _kill_all(descendants)
    return {process.pid, *(p.pid for p in descendants)}


def _sweep(marker: str, ended: set[int]) -> None:
    """End what a trial started that left its group and its process tree (a child in a
    session of its own, reparented once the script exited): every process of this user
    still carrying the trial's environment marker. Then remove the shared memory that
    torch's workers of those processes left in /dev/shm (``torch_<pid>_...``)."""
    stragglers = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and proc.environ().get(TRIAL_ENV) == marker:
                stragglers.append(proc)
    _kill_all(stragglers)
    pids = ended | {p.pid for p in stragglers}
    shm = Path("/dev/shm")
    if not pids or not shm.is_dir():
        return
    names = {str(pid) for pid in pids}
    for entry in shm.glob("torch_*_*"):
        if entry.name.split("_")[1] in names:
            with contextlib.suppress(OSError):
                entry.unlink()


def _descendants(pid: int) -> list[psutil.Process]:
    """The processes below ``pid`` (torchrun's ranks and their loader workers)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _kill_all(processes: list[psutil.Process]) -> None:
    """TERM, a grace period, then KILL, for each process still alive."""
    alive = [p for p in processes if p.is_running()]
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, left = psutil.wait_procs(alive, timeout=3.0)
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(left, timeout=3.0)


def _from_log(log_path: Path, returncode: int | None) -> Measurement:
    """Classify a trial that left no report, from the last lines of its log."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    lines = [line for line in text.rstrip().splitlines() if line.strip()]
    last = _last_error(lines) or (lines[-1] if lines else f"exited with code {returncode}")
    full = disk_full("\n".join(lines[-40:]))
    if full:
        return Measurement(outcome=Outcome.ERROR, message=f"exited with code {returncode}: {full}")
    outcome, message = classify_failure(RuntimeError(last))
    if outcome is Outcome.ERROR:
        message = f"exited with code {returncode}: {last.strip()}"
    return Measurement(outcome=outcome, message=message)


#: A line that names an exception: "ValueError: ...", or a rank's "[rank1]: ValueError: ...".
_ERROR_LINE = re.compile(r"^(?:\[rank(\d+)\]:\s*)?([\w.]*(?:Error|Exception)):\s")


def _last_error(lines: list[str]) -> str | None:
    """The last exception a rank raised: under torchrun the log ends with its banner of
    "=" lines and ChildFailedError, which say only that a rank failed.

    Example:
        >>> _last_error(["[rank1]: ValueError: no bf16 here", "ChildFailedError: ", "===="])
        'rank 1: ValueError: no bf16 here'
    """
    for line in reversed(lines):
        found = _ERROR_LINE.match(line.strip())
        if found and not found.group(2).endswith("ChildFailedError"):
            rank, text = found.group(1), line.strip()[found.start(2) :]
            return f"rank {rank}: {text}" if rank is not None else text
    return None
