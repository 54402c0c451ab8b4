"""The script front end. ``autoaccel tune script.py``: the pipeline of ``advise()``, run on
a training script, one subprocess per trial; ``autoaccel lr-find script.py``: an LR range
test inside the script.

The baseline trial runs the script with its own settings and reports what the search
space needs (its batch size, loader, model size, data kind); every later trial runs the
script with a candidate config. The best config so far is written after each improvement,
so Ctrl-C leaves it in place, and the same command resumes the study.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from rich.console import Console

from autoaccel.advice import Advice
from autoaccel.budget import SWEEP_MAX_LR, SWEEP_MIN_LR, SWEEP_STEPS, Budget
from autoaccel.config import (
    CONFIG_NAME,
    Provenance,
    TrainingConfig,
    find_config,
    load_config,
    now_iso,
    save_config,
)
from autoaccel.errors import TrialError, UsageError
from autoaccel.frontends.outputs import (
    check_out,
    check_writable_folder,
    one_tune_per_config,
    save_or_keep,
)
from autoaccel.launchers import Launch
from autoaccel.measure import Measurement, MeterSettings, PruneBelow
from autoaccel.pipeline import TUNE, Job, PipelineOptions
from autoaccel.pipeline.front import OnBest, tune_job
from autoaccel.probe import probe_system
from autoaccel.progress import Phases, say
from autoaccel.record import lr_find_record, run_record, write_record
from autoaccel.redact import mask_command
from autoaccel.schedule import LrFinding, RangeSweep, sweep_config
from autoaccel.search import TrialRecord, WorkloadFacts, check_storage
from autoaccel.search.shared import is_shared
from autoaccel.states import Objective
from autoaccel.time_to_loss import Goal
from autoaccel.trials.protocol import TrialReport
from autoaccel.trials.script import ScriptRunner, check_script, ended_early
from autoaccel.trials.script_curves import ScriptTrainer, sweep_script

__all__ = ["LrFindResult", "TuneResult", "check_hook", "find_lr_script", "tune_script"]

STATE_DIR = Path(".autoaccel")


@dataclass
class TuneResult:
    """What ``autoaccel tune`` produced and where it put it."""

    advice: Advice
    config_path: Path
    trials_dir: Path
    storage: str


def tune_script(
    script: Path,
    args: tuple[str, ...] = (),
    options: PipelineOptions | None = None,
    *,
    out: Path | None = None,
    console: Console | None = None,
    launch: Launch | None = None,
) -> TuneResult:
    """Tune a training script that calls ``autoaccel.prepare()``.

    Args:
        args: The script's own arguments.
        options: What to tune for, made by ``PipelineOptions.checked(TUNE, ...)`` (which
            checks the objective's rules and the budget); None: the defaults.
        out: Where the config goes (default ``autoaccel.yaml`` beside the script).
        launch: How you launch the script (``autoaccel.launchers.read_launch``): your
            setup is the script's own settings with the launch's on top.

    Raises:
        UsageError: the script cannot be tuned (missing, not Python, no ``prepare()``,
            failing before its first step), or its hook does not suit the objective
            (checked before any search).
    """
    options = options or PipelineOptions.checked(TUNE)
    script = script.resolve() if script.exists() else script
    check_script(script)
    out = check_out(out or script.parent / CONFIG_NAME, script)
    options = replace(
        options,
        storage=check_storage(options.storage),
        command=mask_command(
            ["autoaccel", "tune", str(script), *_objective_flags(options)]
            + (["--launch-config", str(launch.path)] if launch else [])
            + (["--", *args] if args else [])
        ),
        script=script.name,
    )
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    trials_dir = STATE_DIR / "trials" / f"{script.stem}-{stamp}"
    with contextlib.suppress(OSError):  # private: the logs hold what the script prints
        trials_dir.mkdir(parents=True, mode=0o700)
    check_writable_folder(trials_dir, what="the trial logs")
    runner = ScriptRunner(
        script,
        args,
        trials_dir=trials_dir,
        settings=options.settings,
        timeout_s=options.trial_timeout_s,
    )
    with one_tune_per_config(out, STATE_DIR):
        budget = Budget(options.budget_s)  # the baseline counts: the budget starts now
        advice, finding = _tune(runner, options, budget, out, console, launch)
        writes = advice.written_by is None
        if writes:
            save_or_keep(advice.config, out, stem=script.stem)
        record = run_record(
            advice,
            kind="tune",
            command=options.command,
            storage=options.storage,
            config_path=str(out) if writes else None,
            lr_finding=finding,
        )
        advice.record_path = write_record(record, trials_dir)
    return TuneResult(advice, out, trials_dir, advice.search.storage)


def _tune(
    runner: ScriptRunner,
    options: PipelineOptions,
    budget: Budget,
    out: Path,
    console: Console | None,
    launch: Launch | None = None,
) -> tuple[Advice, LrFinding | None]:
    """The shared skeleton on the script's job: its baseline and hook check, the best
    config saved as the search finds it, and with ``lr_find`` the LR range test, whose
    time is kept from the search once the baseline has said what a run costs."""
    metric = options.hook_metric
    finding: list[LrFinding | None] = [None]

    def baseline() -> tuple[Job, Goal | None]:
        job, report = _job(runner, console, metric, launch)
        if options.lr_find:
            budget.keep(LR_PHASE, _sweep_cost_s(job))
        return job, check_hook(report, options, runner.script)

    def save_best(job: Job) -> OnBest | None:
        # A shared study's config is written once, by the worker that ends the study.
        return None if is_shared(options.storage or "") else _SaveBest(out, job, options, console)

    def lr_range_test(advice: Advice, job: Job, phases: Phases) -> Advice:
        if not options.lr_find:
            return advice
        budget.release(LR_PHASE)
        phases.enter("LR range test")
        advice, finding[0] = _with_lr_finding(advice, runner, console)
        return advice

    advice = tune_job(
        baseline, options, budget, console=console, on_best=save_best, then=lr_range_test
    )
    return advice, finding[0]


LR_PHASE = "the LR range test"


def _sweep_cost_s(job: Job) -> float:
    """What ``tune --lr-find``'s range test costs: one more run of the script, start-up
    included, for the sweep's steps at the baseline's step time."""
    return job.one_trial_s + SWEEP_STEPS * job.baseline.step_time_s


def _job(
    runner: ScriptRunner, console: Console | None, metric: str | None, launch: Launch | None
) -> tuple[Job, TrialReport]:
    """The script's baseline trial, the facts its report gives the pipeline, and the report.
    With a ``launch``, your setup is the script's settings with the launch's on top, and a
    second trial measures it: that is the baseline.

    Raises:
        UsageError: the script never reaches ``prepare()``, or fails with its own settings
            (or the launch's).
    """
    script = runner.script
    say(
        console,
        f"running {script.name} with its own settings (the baseline); logs in {runner.trials_dir}",
    )
    started = time.monotonic()
    first = runner.run(None, metric=metric)
    trial_s = time.monotonic() - started  # the real cost of a trial here, start-up included
    if not first.reached_prepare:
        raise ended_early(first, script)
    report = first.report
    if report is None or not first.measurement.ok:
        raise UsageError(
            f"{script.name} fails with its own settings ({first.measurement.outcome}: "
            f"{first.measurement.message}); fix it so `python {script.name}` trains, then tune. "
            f"Log: {first.log_path}"
        )
    facts = WorkloadFacts(
        model_name=script.stem,
        parameter_count=report.parameter_count,
        dataset_size=report.dataset_size,
        conv_model=report.conv_model,
        tensor_data=report.tensor_data,
        device=torch.device(report.device),
        start_s=TUNE.start_s,
        optimizer=report.optimizer,
        has_loader=report.dataset_size is not None,
        fixed=report.fixed or {},
        own_samples=report.own_samples,
        unpassed_scheduler=report.unpassed_scheduler,
        optimizer_lr=report.optimizer_lr,
    )

    def measure(config: TrainingConfig, prune: PruneBelow | None = None) -> Measurement:
        return runner.run(config, prune_below=prune.floor if prune else 0.0).measurement

    user = TrainingConfig.from_dict({**report.user_config})
    measured = first.measurement
    if launch is not None:
        user, measured = _launched(runner, launch, user, console, metric)
    job = Job(
        measure,
        user,
        measured,
        facts,
        probe_system(),
        trial_s=trial_s,
        model=report.model_fingerprint,
        trainer=ScriptTrainer(runner, report, metric),
    )
    return job, report


def _launched(
    runner: ScriptRunner,
    launch: Launch,
    own: TrainingConfig,
    console: Console | None,
    metric: str | None,
) -> tuple[TrainingConfig, Measurement]:
    """Your setup as you launch it, and its measurement (the baseline).

    Raises:
        UsageError: the launch's settings make no config, or the script fails with them.
    """
    user = launch.applied_to(own)
    script = runner.script.name
    say(
        console,
        f"your launch ({launch.tool}, {launch.path.name}): {launch.words()}; measuring "
        f"{script} with it as your setup (the baseline)",
    )
    trial = runner.run(user, metric=metric)
    if not trial.measurement.ok:
        raise UsageError(
            f"{script} fails with your launch's settings from {launch.path} "
            f"({trial.measurement.outcome}: {trial.measurement.message}); fix the launch "
            f"config, or tune without --launch-config. Log: {trial.log_path}"
        )
    return user, trial.measurement


def _objective_flags(options: PipelineOptions) -> list[str]:
    """The objective's flags as the user gave them, for the config's provenance."""
    objective, target, metric = options.objective, options.target, options.hook_metric
    flags = [] if objective is Objective.THROUGHPUT else ["--objective", str(objective)]
    flags += ["--target", f"{target:g}"] if target is not None else []
    return flags + (["--metric", metric] if metric else [])


def check_hook(report: TrialReport, options: PipelineOptions, script: Path) -> Goal | None:
    """The script's evaluate hook, checked on the untrained model (the baseline called it)
    before any search; the goal to aim at, when a target was given.

    Raises:
        UsageError: time-to-loss or an LR range test where the script holds the LR (a
            scheduler prepare() is not given, a DeepSpeed config's); time-to-loss without a
            hook; a hook that raises, gives no number or
            NaN, lacks the metric; a target the untrained model already meets.
    """
    objective, target = options.objective, options.target
    metric = options.hook_metric
    sets_lr = objective is Objective.TIME_TO_LOSS or options.lr_find
    flag = "--lr-find" if objective is Objective.THROUGHPUT else "--objective time-to-loss"
    if sets_lr and report.unpassed_scheduler:
        raise UsageError(
            f"{script.name} makes an LR scheduler that it does not give prepare(), so each of "
            f"its steps puts your LR back and {flag} would measure your LR only: pass it as "
            "prepare(..., scheduler=your_scheduler), or leave out " + flag
        )
    fixed = report.fixed or {}
    held = [f"{knob}: {fixed[knob]}" for knob in ("lr", "schedule") if knob in fixed]
    if sets_lr and held:
        raise UsageError(
            f"{flag} sets the LR at each step, which {script.name} holds ({'; '.join(held)}), "
            f"so it would measure your LR only: let autoaccel set it, or leave out {flag}"
        )
    hook = f"{script.name}'s evaluate hook"
    if report.hook_error:
        raise UsageError(f"{hook} fails on the untrained model: {report.hook_error}")
    if objective is Objective.TIME_TO_LOSS and not report.has_hook:
        raise UsageError(
            f"--objective time-to-loss needs a held-out loss from {script.name}: pass "
            "prepare(..., evaluate=fn), where fn() returns the validation loss (a Lightning "
            "script: a validation_step and a validation loader; a Hugging Face one: an "
            "eval_dataset; see docs/integration.md), or leave --objective out to tune for "
            "throughput"
        )
    start = report.held_out_start
    if not report.has_hook or not start:
        return None
    loss, value = start[0], start[1]
    for name, number in (("the loss", loss), (metric, value)):
        if number is not None and not math.isfinite(number):
            raise UsageError(
                f"{hook} gives {number} for {name} on the untrained model; it must return "
                "the mean held-out loss, a finite number"
            )
    if target is None or loss is None:
        return None
    goal = Goal(target, metric, metric or "held-out loss")
    goal.check_untrained(loss, value, hook, spelled="--target ")
    return goal


class _SaveBest:
    """Writes each new best config at once, so Ctrl-C leaves the best so far in place."""

    def __init__(
        self, out: Path, job: Job, options: PipelineOptions, console: Console | None
    ) -> None:
        self.out = out
        self.profile = job.profile
        self.command = options.command
        self.script = options.script
        self.model = job.model
        self.console = console
        self.failed = False

    def __call__(self, record: TrialRecord) -> None:
        partial = replace(
            record.config,
            provenance=Provenance(
                hardware_fingerprint=self.profile.fingerprint(),
                hardware=self.profile.describe(),
                machine=self.profile.facts(),
                created_at=now_iso(),
                command=self.command + "  (search in progress)",
                script=self.script,
                model=self.model,
                measured={"samples_per_s": round(record.measurement.samples_per_s, 1)},
            ),
        )
        try:
            save_config(partial, self.out)
        except OSError as error:  # the search goes on; the final write says where it went
            if not self.failed:
                say(
                    self.console,
                    f"cannot save the best config so far to {self.out} "
                    f"({error.strerror or error}); the search goes on",
                )
            self.failed = True


def _with_lr_finding(
    advice: Advice, runner: ScriptRunner, console: Console | None
) -> tuple[Advice, LrFinding | None]:
    """The range test at the picked batch size; its suggestion becomes the config's lr."""
    config = advice.config
    say(console, f"LR range test at batch {config.batch_size}")
    finding, trial = sweep_script(runner, sweep_config(config), {})
    if finding is None or finding.suggestion is None:
        why = finding.reason if finding else f"{trial.measurement.message} ({trial.log_path})"
        advice.notes.append(f"the LR range test gave no suggestion: {why}")
        return advice, finding
    provenance = replace(
        config.provenance,
        evidence={**config.provenance.evidence, "lr": f"LR range test: {finding}"},
    )
    advice.config = replace(config, lr=finding.suggestion, lr_scaling="none", provenance=provenance)
    advice.notes.append(f"lr {finding.suggestion:.3g} from the LR range test: {finding}")
    return advice, finding


@dataclass
class LrFindResult:
    """What ``autoaccel lr-find`` measured on a script."""

    finding: LrFinding
    batch_size: int
    config_path: Path | None
    log_path: Path
    raw_losses: tuple[float, ...]
    record_path: Path | None = None  # its run record, for ``autoaccel report``


def find_lr_script(
    script: Path,
    args: tuple[str, ...] = (),
    *,
    config_path: Path | None = None,
    batch_size: int | None = None,
    min_lr: float = SWEEP_MIN_LR,
    max_lr: float = SWEEP_MAX_LR,
    steps: int = SWEEP_STEPS,
    timeout_s: float = 300.0,
    console: Console | None = None,
) -> LrFindResult:
    """Smith's LR range test on a training script, at the tuned batch size.

    The script runs once (one process) with its tuned config when there is one (or its own
    settings), the LR raised exponentially step by step until the loss diverges; the
    process ends there, so nothing it trained is kept. Its record (``summary.json`` in
    its folder under ``.autoaccel/lr-find``) is what ``autoaccel report`` draws.

    Raises:
        UsageError: the script cannot be run this way, or the sweep's arguments are wrong.
        TrialError: the script failed before the sweep gave a curve.
    """
    check_script(script)
    try:
        RangeSweep(min_lr=min_lr, max_lr=max_lr, steps=steps)
    except ValueError as error:
        raise UsageError(f"{error}; e.g. --min-lr 1e-7 --max-lr 10 --steps 100") from None
    path = find_config(config_path, script=script, origin="--config")
    config: TrainingConfig | None = None
    if path is not None:
        config = sweep_config(load_config(path, profile=probe_system()))
    if batch_size is not None:
        config = replace(config or TrainingConfig(), batch_size=batch_size)
    folder = STATE_DIR / "lr-find" / f"{script.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    runner = ScriptRunner(
        script, args, trials_dir=folder, settings=MeterSettings(), timeout_s=timeout_s
    )
    with Phases(console, Budget(timeout_s)) as phases:  # the timeout is its budget
        phases.enter(f"LR range test, {steps} steps")
        finding, trial = sweep_script(
            runner, config, {"min_lr": min_lr, "max_lr": max_lr, "steps": steps}
        )
    if not trial.reached_prepare:
        raise ended_early(trial, script)
    if finding is None or trial.report is None or trial.report.lr_curve is None:
        raise TrialError(
            f"the LR range test on {script.name} gave no curve ({trial.measurement.outcome}: "
            f"{trial.measurement.message}); log: {trial.log_path}\n{trial.log_tail()}"
        )
    used = config.batch_size if config else int(trial.report.user_config["batch_size"])
    raw = tuple(trial.report.lr_curve["raw"])
    record = lr_find_record(
        finding,
        command=mask_command(
            ["autoaccel", "lr-find", str(script), "--steps", str(steps)]
            + (["--", *args] if args else [])
        ),
        script=str(script),
        batch_size=used,
        config_path=str(path) if path else None,
        raw_losses=list(raw),
    )
    return LrFindResult(finding, used, path, trial.log_path, raw, write_record(record, folder))
