"""Hostile and careless inputs against every command and the Python API, on two checkouts
side by side: which are handled cleanly (the expected exit code, no traceback, a short
message, nothing lost or left running) before and after a change.

    python bench/hostile_inputs.py --before /tmp/old-checkout          # old vs. this one
    python bench/hostile_inputs.py --fast                               # skip the slow cases

Each case runs in a fresh subprocess with ``PYTHONPATH`` pointing at the checkout under
test, in its own temporary folder. It prints a table (case, before, after) and the counts,
and with ``--out`` writes them as Markdown. Issue 16 lists the defects these cases probe.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

TRAIN = """
import os, sys, time
import torch
from torch import nn
import autoaccel

if os.environ.get("STALL"):
    open(os.environ["STALL"], "w").write(str(os.getpid()))
    time.sleep(600)
if "--crash" in sys.argv:
    raise ValueError("no data at /data/train")
if "--bad" in sys.argv:
    import argparse
    argparse.ArgumentParser().parse_args()
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(8192, 16), torch.randint(0, 2, (8192,))
run = autoaccel.prepare(model, opt, (x, y), loader_kwargs={"batch_size": 32})
for epoch in range(10**6 if autoaccel.in_trial() else 1):
    for xb, yb in run.loader:
        loss = torch.nn.functional.cross_entropy(run.model(xb), yb)
        run.backward(loss)
        run.step()
"""

BOMB = "provenance:\n  versions:\n" + "".join(
    f"    {name}: &{name} [{', '.join([f'*{prev}'] * 9 if prev else ['x'] * 9)}]\n"
    for prev, name in zip(["", *"abcdef"], "abcdefg", strict=True)
)

GOOD = "batch_size: 64\n"

LEAKY_HOOK = """
import sys
import torch
from torch import nn
import autoaccel

key = sys.argv[sys.argv.index("--api-key") + 1]
model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
data = (torch.randn(4096, 16), torch.randint(0, 2, (4096,)))

def evaluate():
    raise PermissionError(f"the validation server refused key {key}")

run = autoaccel.prepare(model, opt, data, loader_kwargs={"batch_size": 32}, evaluate=evaluate)
while True:
    for xb, yb in run.loader:
        run.backward(torch.nn.functional.cross_entropy(run.model(xb), yb))
        run.step()
"""


@dataclass
class Outcome:
    code: int | None
    out: str
    err: str
    seconds: float
    folder: Path
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class Case:
    name: str
    item: str  # the defect number (or "holds" for what must keep holding)
    argv: list[str] | None = None  # `autoaccel ARGV`
    code: str | None = None  # or python code
    files: dict[str, str] = field(default_factory=dict)
    expect: int = 2
    check: Callable[[Outcome], str | None] = lambda o: None  # a problem, or None
    slow: bool = False
    env: dict[str, str] = field(default_factory=dict)
    special: str | None = None  # signal scenarios


def contains(text: str, where: str = "err") -> Callable[[Outcome], str | None]:
    def check(o: Outcome) -> str | None:
        got = getattr(o, where)
        return None if text in got else f"{where} lacks {text!r}"

    return check


def absent(text: str) -> Callable[[Outcome], str | None]:
    def check(o: Outcome) -> str | None:
        seen = [o.out, o.err]
        for path in o.folder.rglob("*"):
            if path.is_file() and path.suffix != ".db":
                seen.append(path.read_text(errors="replace"))
        return f"{text!r} leaked" if any(text in s for s in seen) else None

    return check


def lacks(text: str) -> Callable[[Outcome], str | None]:
    return lambda o: f"says {text!r}" if text in o.err else None


def unchanged(name: str, text: str) -> Callable[[Outcome], str | None]:
    return lambda o: None if (o.folder / name).read_text() == text else f"{name} was changed"


def quick(limit_s: float) -> Callable[[Outcome], str | None]:
    return lambda o: None if o.seconds < limit_s else f"took {o.seconds:.0f} s"


def all_of(*checks: Callable[[Outcome], str | None]) -> Callable[[Outcome], str | None]:
    def check(o: Outcome) -> str | None:
        return next((p for c in checks if (p := c(o))), None)

    return check


def api(code: str) -> str:
    return (
        "import warnings, torch, math\nfrom torch import nn\nimport autoaccel\n"
        "from autoaccel.errors import UsageError\n"
        "model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.05)\n"
        "data = (torch.randn(512, 16), torch.randint(0, 2, (512,)))\n"
        "try:\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + "except UsageError as e:\n"
        "    print('autoaccel: error:', e, file=__import__('sys').stderr); raise SystemExit(2)\n"
    )


def _with_baseline_rate(record: str, rate: float) -> str:
    """A run record whose baseline measured ``rate`` samples/s (JSON's Infinity, NaN)."""
    data = json.loads(record)
    data["baseline"]["samples_per_s"] = rate
    return json.dumps(data)


def cases() -> list[Case]:
    show = ["show", "autoaccel.yaml"]
    c = [
        Case("show: lr: .nan", "7", show, files={"autoaccel.yaml": "lr: .nan\n"}),
        Case("show: lr: .inf", "7", show, files={"autoaccel.yaml": "lr: .inf\n"}),
        Case(
            "show --json: a NaN figure in provenance",
            "7",
            [*show, "--json"],
            files={"autoaccel.yaml": "provenance:\n  measured:\n    speedup: .nan\n"},
        ),
        Case(
            "show: batch_size 1e20", "8", show, files={"autoaccel.yaml": f"batch_size: {10**20}\n"}
        ),
        Case(
            "show: num_workers 100000", "8", show, files={"autoaccel.yaml": "num_workers: 100000\n"}
        ),
        Case(
            "show: num_threads 100000", "8", show, files={"autoaccel.yaml": "num_threads: 100000\n"}
        ),
        Case(
            "show: processes 100000",
            "8",
            show,
            files={"autoaccel.yaml": "strategy: ddp\nprocesses: 100000\n"},
        ),
        Case(
            "show: grad_accum_steps 1e9",
            "8",
            show,
            files={"autoaccel.yaml": "grad_accum_steps: 1000000000\n"},
        ),
        Case(
            "show: threads beyond this machine's cores",
            "8",
            show,
            files={"autoaccel.yaml": "num_threads: 4096\n"},
            expect=0,
            check=contains("num_threads: 4096 threads, but this machine has"),
        ),
        Case(  # refused while FSDP was not implemented; FSDP2 runs since, so it shows
            "show: strategy fsdp",
            "13",
            show,
            files={"autoaccel.yaml": "strategy: fsdp\nprocesses: 2\n"},
            expect=0,
        ),
        Case(
            "show --json: a 460-byte alias bomb",
            "10",
            [*show, "--json"],
            files={"autoaccel.yaml": BOMB},
            check=all_of(
                quick(10), lambda o: None if len(o.out) + len(o.err) < 4000 else "huge output"
            ),
        ),
        Case("show: an empty file", "11", show, files={"autoaccel.yaml": ""}),
        Case(
            "show: a truncated file (header only)",
            "11",
            show,
            files={"autoaccel.yaml": "# autoaccel training config (schema 1).\n"},
        ),
        Case(
            "show: duplicate keys",
            "17",
            show,
            files={"autoaccel.yaml": "batch_size: 32\nbatch_size: 64\n"},
        ),
        Case("show /dev/zero", "18", ["show", "/dev/zero"], check=quick(10)),
        Case("show: a 2 MB file", "18", show, files={"autoaccel.yaml": "# pad\n" * 350_000}),
        Case("show: a directory", "20", ["show", "."], check=contains("directory")),
        Case(
            "run --config DIR",
            "20",
            ["run", "train.py", "--config", "."],
            files={"train.py": TRAIN},
            check=contains("directory"),
        ),
        Case(
            "show /etc/passwd: a short excerpt only",
            "22",
            ["show", "/etc/passwd"],
            check=lambda o: None if len(o.err) < 800 else f"{len(o.err)} characters of error",
        ),
        Case(
            "show: an empty provenance.versions",
            "23",
            show,
            files={"autoaccel.yaml": "batch_size: 64\nprovenance:\n  versions:\n"},
            expect=0,
        ),
        Case(
            "show: unsafe YAML (python/object)",
            "holds",
            show,
            files={"autoaccel.yaml": "batch_size: !!python/object/apply:os.system ['true']\n"},
        ),
        Case("show: not UTF-8", "holds", show, files={"autoaccel.yaml": "batch_size: \udcff\n"}),
        Case(
            "show: nested 5000 deep",
            "holds",
            show,
            files={"autoaccel.yaml": "[" * 5000 + "]" * 5000},
        ),
    ]
    # a refused case costs nothing; one that runs (the old code) must not take the default 4 m
    tune = ["tune", "train.py", "--max-trials", "2", "--window", "0.3"]
    train = {"train.py": TRAIN}
    c += [
        Case(
            "tune --out train.py (the script itself)",
            "1",
            [*tune, "--out", "train.py", "--budget", "30s"],
            files=train,
            check=unchanged("train.py", TRAIN),
            slow=True,
        ),
        Case(
            "tune --out notes.txt (not a config)",
            "1",
            [*tune, "--out", "notes.txt", "--budget", "30s"],
            files={**train, "notes.txt": "mine\n"},
            check=unchanged("notes.txt", "mine\n"),
            slow=True,
        ),
        Case(
            "tune --out a directory",
            "6",
            [*tune, "--out", "."],
            files=train,
            check=quick(15),
            slow=True,
        ),
        Case(
            "tune --out /proc/x.yaml (unwritable)",
            "6",
            [*tune, "--out", "/proc/x.yaml"],
            files=train,
            check=quick(15),
            slow=True,
        ),
        Case(
            "tune --storage nosuch://x",
            "6",
            [*tune, "--storage", "nosuch://x"],
            files=train,
            check=quick(15),
            slow=True,
        ),
        Case(
            "tune --storage with a password",
            "2",
            [*tune, "--storage", "postgresql://u:hunter2@127.0.0.1:1/db"],
            files=train,
            check=all_of(quick(15), absent("hunter2")),
            slow=True,
        ),
        Case("tune --budget nan", "7", [*tune, "--budget", "nan"], files=train),
        Case("tune --budget inf", "7", [*tune, "--budget", "inf"], files=train),
        Case(
            "tune --trial-timeout nan",
            "7",
            [*tune, "--trial-timeout", "nan", "--budget", "30s"],
            files=train,
        ),
        Case("tune --window -1", "19", [*tune, "--window", "-1", "--budget", "30s"], files=train),
        Case("tune --window nan", "19", [*tune, "--window", "nan", "--budget", "30s"], files=train),
        Case(
            "tune --confirm-pairs -1",
            "19",
            [*tune, "--confirm-pairs", "-1", "--budget", "30s"],
            files=train,
        ),
        Case("tune --max-trials 0", "holds", [*tune, "--max-trials", "0"], files=train),
        Case(
            "tune --budget 10s (below the real minimum)",
            "5",
            [*tune, "--budget", "10s"],
            files=train,
            check=quick(8),
        ),
        Case("tune missing.py", "holds", ["tune", "missing.py"]),
        Case(
            "tune: a crash before prepare()",
            "15",
            [*tune, "--", "--crash"],
            files=train,
            check=all_of(
                contains("ValueError: no data"),
                contains("log.txt"),
                lacks("call it before training"),  # a crash is not a missing prepare()
            ),
            slow=True,
        ),
        Case(
            "tune: a bad script argument",
            "15",
            [*tune, "--", "--bad"],
            files=train,
            check=contains("exit code 2"),
            slow=True,
        ),
        Case(
            "tune --budget 25s: searches and ends in time",
            "5",
            ["tune", "train.py", "--budget", "25s", "--window", "0.3", "--json"],
            files=train,
            expect=0,
            check=all_of(
                quick(25 + 12),
                lambda o: None if '"trials_measured": 1,' not in o.out else "only the baseline",
            ),
            slow=True,
        ),
        Case(
            "tune -- --api-key SECRET: not in logs or config",
            "3",
            [*tune, "--budget", "25s", "--", "--api-key", "sk-SECRET-1"],
            files=train,
            expect=0,
            check=all_of(absent("sk-SECRET-1"), lambda o: _private(o.folder)),
            slow=True,
        ),
        Case(
            "tune: an existing 0644 config keeps its mode",
            "12",
            [*tune, "--budget", "25s"],
            files={**train, "autoaccel.yaml": GOOD},
            expect=0,
            check=lambda o: (
                None
                if stat.S_IMODE((o.folder / "autoaccel.yaml").stat().st_mode) & 0o044 == 0o044
                else "the config became private"
            ),
            slow=True,
        ),
    ]
    c += [
        Case(  # refused while FSDP was not implemented; FSDP2 runs since, so it trains
            "run: a fsdp config",
            "13",
            ["run", "train.py"],
            files={**train, "autoaccel.yaml": "strategy: fsdp\nprocesses: 2\n"},
            expect=0,
        ),
        Case(
            "run: a script killed by SIGTERM",
            "25",
            ["run", "k.py"],
            files={
                "k.py": "import os, signal  # prepare(\nos.kill(os.getpid(), signal.SIGTERM)\n",
                "autoaccel.yaml": GOOD,
            },
            expect=128 + 15,
        ),
        Case(
            "run: its echo is shell-quoted, secrets masked",
            "25",
            ["run", "k.py", "--", "--name", "my run", "--token", "tk-1"],
            files={"k.py": "pass  # prepare(\n", "autoaccel.yaml": GOOD},
            expect=0,
            check=all_of(contains("--name 'my run'"), absent("tk-1")),
        ),
        Case("lr-find --min-lr nan", "19", ["lr-find", "train.py", "--min-lr", "nan"], files=train),
        Case("lr-find --steps 0", "19", ["lr-find", "train.py", "--steps", "0"], files=train),
        Case(
            "lr-find: a crash before prepare()",
            "15",
            ["lr-find", "train.py", "--", "--crash"],
            files=train,
            check=contains("ValueError: no data"),
            slow=True,
        ),
    ]
    c += [
        Case(
            "advise(budget_s='20')",
            "26",
            code=api("autoaccel.advise(model, data, budget_s='20', progress=False)"),
        ),
        Case(
            "advise(budget_s=nan)",
            "7",
            code=api("autoaccel.advise(model, data, budget_s=math.nan, progress=False)"),
        ),
        Case(
            "advise(val_data=..., budget_s=5): quotes 5",
            "21",
            code=api("autoaccel.advise(model, data, val_data=data, budget_s=5, progress=False)"),
            check=contains("budget of 5 s"),
        ),
        Case(
            "prepare(config=123)", "26", code=api("autoaccel.prepare(model, opt, data, config=123)")
        ),
        Case("prepare(model='x')", "26", code=api("autoaccel.prepare('x', opt, data)")),
        Case(
            "prepare() with AUTOACCEL_TRIAL=1 left set",
            "24",
            code=api("autoaccel.prepare(model, opt, data)"),
            env={"AUTOACCEL_TRIAL": "1"},
        ),
        Case(
            "prepare(): a config tuned for another model",
            "9",
            code=api(
                "from autoaccel.config import TrainingConfig\n"
                "c = TrainingConfig.from_dict({'lr': 0.8, 'provenance': {'script': 'other.py'}})\n"
                "autoaccel.prepare(model, opt, data, config=c)\n"
                "print('lr', opt.param_groups[0]['lr'])"
            ),
            expect=0,
            check=all_of(contains("lr 0.05", "out"), contains("NOT applied")),
        ),
    ]
    # a real run record (the README main job's), so that the report is written if --out allows
    record = (HERE / "bench" / "data" / "summary.json").read_text()
    report = {"train.py": TRAIN, "summary.json": record}
    gloo = "closing tag [/__w/pytorch/gloo/transport/tcp/pair.cc:553] [bold]x"
    c += [  # issue 36
        Case(
            "report --out the training script",
            "36.1",
            ["report", "summary.json", "--out", "train.py"],
            files=report,
            check=unchanged("train.py", TRAIN),
        ),
        Case(
            "report --out the record it reads",
            "36.1",
            ["report", "summary.json", "--out", "summary.json"],
            files=report,
            check=unchanged("summary.json", record),
        ),
        Case(
            "report --out a directory",
            "36.12",
            ["report", "summary.json", "--out", "."],
            files=report,
        ),
        Case(
            "report --out below a file",
            "36.12",
            ["report", "summary.json", "--out", "train.py/r.html"],
            files=report,
        ),
        Case(
            "report: a record nested 100000 deep",
            "36.11",
            ["report", "deep.json", "--out", "r.html"],
            files={"deep.json": "[" * 100_000 + "]" * 100_000},
        ),
        Case(
            "report: a record with an infinite rate",
            "36.11",
            ["report", "summary.json", "--out", "r.html"],
            files={"summary.json": _with_baseline_rate(record, float("inf"))},
        ),
        Case(
            "export --dir over the user's own trainer.py",
            "36.3",
            ["export", "autoaccel.yaml", "--to", "lightning", "--dir", "."],
            files={"autoaccel.yaml": GOOD, "trainer.py": "# mine\n"},
            check=unchanged("trainer.py", "# mine\n"),
        ),
        Case(
            "export --dir below a file",
            "36.12",
            ["export", "autoaccel.yaml", "--to", "env", "--dir", "autoaccel.yaml/out"],
            files={"autoaccel.yaml": GOOD},
        ),
        Case(
            "tune --storage: a password holding '/'",
            "36.4",
            ["tune", "train.py", "--storage", "postgresql://tuner:hun/ter2@127.0.0.1:1/studies"],
            files={"train.py": TRAIN},
            check=all_of(contains("tuner:***@127.0.0.1"), lacks("hun/ter2"), lacks("ter2")),
        ),
        Case(
            "tune --storage: a password in the query",
            "36.4",
            ["tune", "train.py", "--storage", "postgresql://tuner@127.0.0.1:1/s?password=hunter2"],
            files={"train.py": TRAIN},
            check=all_of(contains("password=***"), lacks("hunter2")),
        ),
        Case(
            "tune: a dangling symlink as the study file",
            "36.17",
            code=(
                "import os, sys\nos.makedirs('.autoaccel')\n"
                "os.symlink('gone/studies.db', '.autoaccel/studies.db')\n"
                "from autoaccel.cli import main\nsys.exit(main(['tune', 'train.py']))\n"
            ),
            files={"train.py": TRAIN},
            check=contains("a link to a missing file"),
        ),
        Case(
            "tune: the evaluate hook's error repeats --api-key",
            "36.7",
            ["tune", "leaky.py", "--budget", "60s", "--", "--api-key", "sk-HOOK-4242"],
            files={"leaky.py": LEAKY_HOOK},
            check=all_of(contains("evaluate hook fails"), lacks("sk-HOOK-4242")),
        ),
        Case(
            "run: the tune hint for a script named x$(id).py",
            "36.23",
            ["run", "x$(id).py"],
            files={"x$(id).py": TRAIN},
            check=contains("`autoaccel tune 'x$(id).py'`"),
        ),
        Case(
            "show: terminal escape sequences in a config",
            "36.14",
            show,
            files={"autoaccel.yaml": 'provenance:\n  hardware: "x\\e]0;pwned\\a\\e[2J"\n'},
            expect=0,
            check=lambda o: "escape sequence reached the terminal" if "\x1b" in o.out else None,
        ),
        Case(
            "show: rich markup in a config's evidence",
            "36.24",
            show,
            files={"autoaccel.yaml": f"provenance:\n  evidence:\n    batch_size: '{gloo}'\n"},
            expect=0,
            check=contains(gloo, "out"),
            env={"COLUMNS": "400"},
        ),
    ]
    c += [
        Case("SIGTERM to tune mid-trial", "4", files=train, special="TERM", expect=143, slow=True),
        Case("SIGHUP to tune mid-trial", "4", files=train, special="HUP", expect=129, slow=True),
        Case("SIGKILL to tune mid-trial", "4", files=train, special="KILL", expect=-9, slow=True),
        Case("two tunes of one config at once", "14", files=train, special="TWO", slow=True),
    ]
    return c


def _private(folder: Path) -> str | None:
    for trial in (folder / ".autoaccel" / "trials").glob("*/*/log.txt"):
        for path in (trial, trial.parent, trial.parent.parent):
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                return f"{path} is readable by others"
    return None


def run_case(case: Case, checkout: Path) -> tuple[bool, str]:
    """(handled cleanly, why not)."""
    with tempfile.TemporaryDirectory(prefix="hostile-") as name:
        folder = Path(name)
        for file, text in case.files.items():
            (folder / file).write_text(text, errors="surrogateescape")
        env = {**os.environ, "PYTHONPATH": str(checkout), **case.env}
        env.pop("AUTOACCEL_CONFIG", None)
        if case.special:
            return _signal_case(case, folder, env)
        command = (
            [sys.executable, "-m", "autoaccel.cli", *case.argv]
            if case.argv
            else [sys.executable, "-c", case.code or ""]
        )
        started = time.monotonic()
        try:
            done = subprocess.run(
                command, cwd=folder, env=env, capture_output=True, text=True, timeout=180
            )
        except subprocess.TimeoutExpired:
            return False, "hung past 180 s"
        outcome = Outcome(
            done.returncode, done.stdout, done.stderr, time.monotonic() - started, folder
        )
        ours = done.stderr.split("last lines of the log:")[0]  # the script's own may follow
        if "Traceback" in ours:
            last = ours.strip().splitlines()[-1][:80]
            return False, f"traceback: {last}"
        if done.returncode != case.expect:
            line = (done.stderr.strip().splitlines() or [""])[-1][:80]
            return False, f"exit {done.returncode}: {line}"
        problem = case.check(outcome)
        return (problem is None), (problem or "")


def _signal_case(case: Case, folder: Path, env: dict[str, str]) -> tuple[bool, str]:
    pid_file = folder / "trial.pid"
    env = {**env, "STALL": str(pid_file)}
    command = [sys.executable, "-m", "autoaccel.cli", "tune", "train.py", "--trial-timeout", "5m"]
    tune = subprocess.Popen(
        command,
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not pid_file.exists():
            return False, "the trial never started"
        trial = int(pid_file.read_text())
        if case.special == "TWO":
            second = subprocess.run(
                command,
                cwd=folder,
                env={**env, "STALL": ""},
                capture_output=True,
                text=True,
                timeout=120,
            )
            ok = second.returncode == 2 and "Traceback" not in second.stderr
            return ok, "" if ok else f"the second tune: exit {second.returncode}"
        tune.send_signal(getattr(signal, f"SIG{case.special}"))
        try:
            tune.wait(timeout=30)
        except subprocess.TimeoutExpired:
            return False, "tune did not stop within 30 s"
        time.sleep(3)
        alive = _alive(trial)
        if tune.returncode != case.expect:
            return False, f"exit {tune.returncode}" + (", the trial still runs" if alive else "")
        return (not alive), ("the trial still runs" if alive else "")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(tune.pid, signal.SIGKILL)
        tune.wait()
        if pid_file.exists() and pid_file.read_text():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="an older checkout to compare with")
    parser.add_argument("--after", type=Path, default=HERE, help="the checkout under test")
    parser.add_argument("--fast", action="store_true", help="skip the slow cases")
    parser.add_argument("--out", type=Path, help="write the table here as Markdown")
    parser.add_argument("--only", help="the cases of one issue's items, e.g. --only 36.")
    args = parser.parse_args()
    chosen = [c for c in cases() if not (args.fast and c.slow)]
    chosen = [c for c in chosen if args.only is None or c.item.startswith(args.only)]
    sides = {"before": args.before, "after": args.after} if args.before else {"after": args.after}
    rows, clean = [], dict.fromkeys(sides, 0)
    for case in chosen:
        cells = []
        for side, checkout in sides.items():
            ok, why = run_case(case, checkout.resolve())
            clean[side] += ok
            cells.append("clean" if ok else f"**not clean**: {why}")
        rows.append(f"| {case.name} | {case.item} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    header = [
        f"Hostile inputs, {len(chosen)} cases, on {platform.node()} "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores), "
        f"{time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        "| case | issue item | " + " | ".join(sides) + " |",
        "| --- | --- | " + " | ".join("---" for _ in sides) + " |",
    ]
    counts = "; ".join(f"{side}: {n} of {len(chosen)} handled cleanly" for side, n in clean.items())
    text = "\n".join([*header, *rows, "", counts]) + "\n"
    print(counts)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
