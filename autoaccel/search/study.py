"""The Optuna study that finds the fastest configuration.

The loop is ask/tell so autoaccel decides each trial's fate itself:

1. the baseline (the caller's setup) and the heuristic guesses from the diagnosis are
   enqueued first (``enqueue_trial``);
2. then greedy neighbours of the best so far, one knob changed at a time, in the order the
   diagnosis suggests (input-bound: loader knobs first; compute-bound: batch and precision);
3. then Optuna's TPE sampler, until ``patience`` trials in a row bring no gain.

A trial that runs out of memory, diverges, crashes or times out is completed with value 0
and a violated constraint (``Trial.set_constraint``), so TPE steers away from that region;
the memory model learns from it too. A trial clearly slower than the best is stopped early
and recorded PRUNED. The study lives in SQLite under ``.autoaccel/`` by default (any Optuna
storage URL works), so an interrupted search resumes where it stopped.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console

from autoaccel.budget import Budget
from autoaccel.config import TrainingConfig
from autoaccel.measure import Measurement, PruneBelow
from autoaccel.progress import say
from autoaccel.redact import mask_url
from autoaccel.search.records import (
    SearchResult,
    TrialFn,
    TrialRecord,
    one_workload,
    params_key,
)
from autoaccel.search.shared import (
    DUPLICATE_ATTR,
    FINGERPRINT_ATTR,
    GRACE_S,
    HEARTBEAT_S,
    OUT_OF_REACH,
    SOURCE_ATTR,
    WORKER_ATTR,
    Heartbeat,
    beat,
    fail_orphaned_trials,
    is_shared,
    open_storage,
    quiet_experimental,
    taken_elsewhere,
    worker_id,
)
from autoaccel.search.space import SearchSpace
from autoaccel.search.storage import (
    DEFAULT_STORAGE,
    OBJECTIVE_NAME,
    check_storage,
    feasibility,
    flat_attrs,
    measurement_attrs,
    record_end_phase,
    storage_url,
)
from autoaccel.states import Outcome

__all__ = [
    "DEFAULT_STORAGE",
    "Search",
    "check_storage",
    "record_end_phase",
    "storage_url",
]

PRUNE_BELOW = 0.7  # a trial running under this share of the best so far is stopped
GAIN = 1.01  # an improvement must beat the best by this factor to count

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Search:
    """One study over a ``SearchSpace``, measuring with ``trial_fn``.

    Args:
        space: The knobs and their values.
        trial_fn: Runs one config and returns its measurement (with a prune callback).
        budget: The run's one deadline; the search stops when the time it leaves (after
            what later phases keep) is less than a typical trial.
        max_trials: At most this many measured trials.
        storage: Optuna storage URL or SQLite path (default ``.autoaccel/studies.db``).
        study_name: Name in the storage; the same name resumes.
        seed: Seeds the sampler.
        patience: Sampler trials in a row without gain before stopping.
        priority: Knob names in the order the greedy phase tries them.
        console: Where progress lines go (None for silence).
        on_best: Called with each new best trial (``autoaccel tune`` saves it at once, so an
            interrupted search leaves the best config so far).
        fingerprint: This machine's hardware fingerprint: each trial records it, and only
            trials measured on the same hardware are ranked together.
        out_of_reach: Why a config could never be written, given the best trial so far
            (the pipeline's guard: ``autoaccel.pipeline.reach.out_of_reach``), or None; such
            a config is recorded unmeasured, as one the memory model rules out is.

    In a shared study (a database server, ``autoaccel.search.shared``) other workers'
    trials join the ranking as they finish, count towards ``max_trials``, and a config
    another worker is measuring is not measured here.
    """

    def __init__(
        self,
        space: SearchSpace,
        trial_fn: TrialFn,
        *,
        budget: Budget,
        max_trials: int,
        study_name: str,
        storage: str | None = None,
        seed: int | None = None,
        patience: int = 4,
        priority: Sequence[str] = (),
        console: Console | None = None,
        on_best: Callable[[TrialRecord], None] | None = None,
        fingerprint: str | None = None,
        workload: str | None = None,
        out_of_reach: Callable[[TrainingConfig, TrialRecord], str | None] | None = None,
    ) -> None:
        self.space = space
        self.out_of_reach = out_of_reach
        self.trial_fn = trial_fn
        self.budget = budget
        self.max_trials = max_trials
        self.storage = storage_url(storage)
        self.study_name = study_name
        self.patience = patience
        self.priority = [n for n in priority if n in space.names] + [
            n for n in space.names if n not in priority
        ]
        self.console = console
        self.clock = budget.clock
        self.on_best = on_best
        self.fingerprint = fingerprint
        self.worker = worker_id()
        self.shared = is_shared(self.storage)
        self.rdb = open_storage(self.storage)
        self.study = optuna.create_study(
            study_name=study_name,
            storage=self.rdb,
            direction="maximize",
            # Workers sharing a study: the liar keeps TPE from proposing a running config.
            sampler=optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=5, constant_liar=self.shared
            ),
            load_if_exists=True,
        )
        if workload is not None:
            one_workload(self.study, workload)
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, and still there
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study.set_metric_names([OBJECTIVE_NAME])  # the value's name in the dashboard
        self.records: list[TrialRecord] = []
        self._by_key: dict[str, TrialRecord] = {}
        self._started = budget.clock()
        self._measured = 0
        self._seen: set[int] = set()  # trials of the study read or made here
        self._in_flight: set[str] = set()  # configs other workers are measuring now
        self._other_hardware = 0
        fail_orphaned_trials(self.study)  # a killed tuner's trials, left "running"
        self._refresh(initial=True)

    # --- resuming, and other workers' trials ---------------------------------------------

    def _refresh(self, *, initial: bool = False) -> None:
        """Read the trials this worker has not seen: at the start (resuming), and in a shared
        study before each decision, after failing those whose worker stopped beating."""
        if self.shared:
            with quiet_experimental():
                optuna.storages.fail_stale_trials(self.study)
        self._in_flight = set()
        for frozen in self.study.get_trials(deepcopy=False):
            if frozen.number in self._seen:
                continue
            attrs = frozen.user_attrs
            if frozen.state is TrialState.RUNNING:
                if frozen.params and attrs.get(WORKER_ATTR) != self.worker:
                    self._in_flight.add(self._key(dict(frozen.params)))
                continue
            if frozen.state is TrialState.WAITING:
                continue
            self._seen.add(frozen.number)
            record = self._record_of(frozen, "resumed" if initial else None)
            if record is None:
                continue
            if not initial:
                self._measured += 1  # another worker's: the study's max_trials counts it
            self._remember(record)

    def _record_of(
        self, frozen: optuna.trial.FrozenTrial, source: str | None
    ) -> TrialRecord | None:
        """A finished trial of the study as a record; None when it is not one to rank: not
        measured, of another space, a step-back, or measured on other hardware."""
        attrs = frozen.user_attrs
        if frozen.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            return None
        if "measurement" not in attrs or set(frozen.params) != set(self.space.names):
            return None
        if attrs.get(SOURCE_ATTR) == OUT_OF_REACH:
            return None  # judged at that run's budget: this run judges it again
        recorded = attrs.get(FINGERPRINT_ATTR)
        if recorded and self.fingerprint and recorded != self.fingerprint:
            self._other_hardware += 1
            return None
        return TrialRecord(
            number=frozen.number,
            params=dict(frozen.params),
            config=self.space.config_for(dict(frozen.params)),
            measurement=Measurement.from_dict(attrs["measurement"]),
            source=source or f"worker {attrs.get(WORKER_ATTR, '?')}",
            parent=attrs.get("parent"),
            changed=attrs.get("changed"),
        )

    def _remember(self, record: TrialRecord) -> None:
        self.records.append(record)
        self._by_key.setdefault(self._key(record.params), record)

    def _key(self, params: dict[str, Any]) -> str:
        """One key per config as it runs (``SearchSpace.normal``)."""
        return params_key(self.space.normal(params))

    # --- what to try next ----------------------------------------------------------------

    @property
    def best(self) -> TrialRecord | None:
        ok = [r for r in self.records if r.measurement.ok]
        return max(ok, key=lambda r: r.value) if ok else None

    def _neighbours(self, record: TrialRecord) -> list[tuple[dict[str, Any], str]]:
        found = []
        for name in self.priority:
            choices = list(self.space.knob(name).choices)
            here = choices.index(record.params[name])
            if name == "batch_size":
                order = [here + 2, here + 1, here - 1]  # x4, x2, /2
            elif isinstance(choices[0], bool) or name == "precision":
                order = [i for i in range(len(choices)) if i != here]
            else:
                order = [here + 1, here - 1]
            for i in order:
                if 0 <= i < len(choices):
                    params = self._moved(record.params, name, choices[i])
                    if params is None:
                        continue
                    key = self._key(params)
                    if key not in self._by_key and key not in self._in_flight:
                        found.append((params, name))
        return found

    def _moved(self, params: dict[str, Any], name: str, value: Any) -> dict[str, Any] | None:
        """``params`` with one knob changed. A change of ``processes`` keeps the global
        batch (the per-process batch follows, when the space has it), so DDP is compared
        with one process on the same optimizer steps; None when no batch size fits."""
        moved = {**params, name: value}
        if name != "processes" or "batch_size" not in params:
            return moved
        global_batch = params["batch_size"] * params["processes"]
        if global_batch % value:
            return None
        per_process = global_batch // value
        if per_process not in self.space.knob("batch_size").choices:
            return None
        return {**moved, "batch_size": per_process}

    def _time_left(self) -> float:
        return self.budget.left_s()

    def _typical_trial_s(self) -> float:
        times = [r.elapsed_s for r in self.records if r.elapsed_s > 0]
        return statistics.median(times) if times else 0.0

    # --- running one trial -----------------------------------------------------------------

    def _run(
        self,
        params: dict[str, Any],
        source: str,
        parent: int | None = None,
        changed: str | None = None,
        known: Measurement | None = None,
    ) -> TrialRecord | None:
        """Measure ``params`` once: the record measured before (here or by another worker);
        None when another worker claims it first (it measures, this one moves on)."""
        if self.shared:
            self._refresh()
        cached = self._by_key.get(self._key(params))
        if cached is not None:
            return cached
        self.study.enqueue_trial(params)
        trial = self._ask()
        other = self._stepped_back(trial)
        if other is None:
            return self._measure(trial, source, parent, changed, known)
        if known is None:
            return None
        # Workers that start together each run the baseline for its facts; the study keeps
        # one trial of it, this worker ranks its own measurement under that trial's number.
        self._seen.add(other)
        record = TrialRecord(other, params, self.space.config_for(params), known, source)
        self._remember(record)
        return record

    def _ask(self) -> optuna.Trial:
        """A new trial of the study; in a shared study it beats at once, so that a worker
        killed any time after this leaves a trial that goes stale (Optuna fails only trials
        that have beaten)."""
        with quiet_experimental():
            trial = self.study.ask(self.space.distributions())
        beat(self.rdb, trial)
        return trial

    def _stepped_back(self, trial: optuna.Trial) -> int | None:
        """In a shared study: the number of another trial that claims this trial's config
        too (then this trial is failed unmeasured, marked as the other's duplicate)."""
        if not self.shared:
            return None
        other = taken_elsewhere(self.study, trial, self._key, self._key(dict(trial.params)))
        if other is None:
            return None
        trial.set_user_attr(DUPLICATE_ATTR, other)
        self._mark(trial)
        self.study.tell(trial, state=TrialState.FAIL)
        self._seen.add(trial.number)
        self._in_flight.add(self._key(dict(trial.params)))
        return other

    @property
    def marks(self) -> dict[str, str]:
        """What each trial of this worker records: the worker, and the hardware."""
        return {WORKER_ATTR: self.worker, FINGERPRINT_ATTR: self.fingerprint or ""}

    def _mark(self, trial: optuna.Trial) -> None:
        for name, value in self.marks.items():
            trial.set_user_attr(name, value)

    def _measure(
        self,
        trial: optuna.Trial,
        source: str,
        parent: int | None,
        changed: str | None,
        known: Measurement | None = None,
    ) -> TrialRecord:
        params = dict(trial.params)
        config = self.space.config_for(params)
        self._seen.add(trial.number)
        self._mark(trial)
        started = self.clock()
        best = self.best
        if known is not None:
            measurement = known  # measured before the search (the baseline)
            self._measured += 1
        elif not self.space.memory.fits(config.batch_size):
            predicted = self.space.memory.predict(config.batch_size) or 0
            measurement = Measurement(
                outcome=Outcome.OOM,
                message=f"predicted by the memory model: {predicted / 2**30:.1f} GiB at batch "
                f"{config.batch_size} exceeds the budget, not run",
            )
            source = "predicted"
        elif (why := self._out_of_reach(config, best)) is not None:
            measurement = Measurement(outcome=Outcome.PRUNED, message=why)
            source = OUT_OF_REACH
        else:
            prune = PruneBelow(PRUNE_BELOW * best.value) if best is not None else None
            with Heartbeat(self.rdb, trial):  # a shared study fails it if this worker dies
                measurement = self.trial_fn(config, prune)
            self._measured += 1
        elapsed = self.clock() - started
        if not self.space.counts_memory(config):
            pass  # another device's memory: the CPU candidate of a GPU search
        elif measurement.outcome is Outcome.OOM:
            self.space.memory.observe_oom(config.batch_size)
        elif measurement.ok:
            self.space.memory.observe(config.batch_size, measurement.memory_growth_bytes)
        trial.set_user_attr("measurement", measurement_attrs(measurement))  # read to resume
        for name, value in flat_attrs(measurement).items():  # sortable in the dashboard
            trial.set_user_attr(name, value)
        trial.set_user_attr(SOURCE_ATTR, source)
        if parent is not None:
            trial.set_user_attr("parent", parent)
            trial.set_user_attr("changed", changed)
        if measurement.outcome is Outcome.PRUNED:
            # what it reached before it was stopped: the dashboard plots pruned trials by it
            trial.report(measurement.samples_per_s, step=measurement.window_steps)
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            # Failures complete with 0 and a violated constraint: TPE learns to avoid them.
            for key, value in feasibility(measurement).items():
                trial.set_constraint(key, value)
            self.study.tell(trial, measurement.samples_per_s if measurement.ok else 0.0)
        record = TrialRecord(
            trial.number, params, config, measurement, source, parent, changed, elapsed
        )
        self._remember(record)
        if self.on_best is not None and self.best is record:
            self.on_best(record)
        self._report(record)
        return record

    def _out_of_reach(self, config: TrainingConfig, best: TrialRecord | None) -> str | None:
        if self.out_of_reach is None or best is None:
            return None
        return self.out_of_reach(config, best)

    def _report(self, record: TrialRecord) -> None:
        if self.console is None:
            return
        m = record.measurement
        best = self.best
        base = next((r for r in self.records if r.source == "baseline"), None)
        shown = ", ".join(f"{k}={v}" for k, v in record.params.items())
        result = f"{m.samples_per_s:,.0f} samples/s" if m.ok else f"{m.outcome}: {m.message}"
        if record.source == OUT_OF_REACH:
            result = m.message
        ratio = ""
        if best is not None and base is not None and base.value > 0:
            ratio = f" ({best.value / base.value:.2f}x baseline)"
        best_text = f"{best.value:,.0f}{ratio}" if best else "none yet"
        say(
            self.console,
            f"trial #{record.number} ({self._measured}/{self.max_trials})  {shown}  -> "
            f"{result}  | best {best_text}  | {max(0.0, self._time_left()):.0f} s left",
            tag="",
        )

    # --- the whole search ------------------------------------------------------------------

    def _should_stop(self) -> str | None:
        if self._measured >= self.max_trials:
            return f"max_trials ({self.max_trials}) reached"
        if self._time_left() < self._typical_trial_s():
            return self.budget.stop_reason()
        return None

    def run(
        self,
        baseline: TrainingConfig,
        guesses: Sequence[TrainingConfig] = (),
        *,
        baseline_measurement: Measurement | None = None,
    ) -> SearchResult:
        """Measure the baseline (unless given), the guesses, greedy neighbours, then
        sampled trials."""
        base_record = self._run(
            self.space.params_of(baseline), "baseline", known=baseline_measurement
        )
        assert base_record is not None  # a measured baseline is never stepped back from
        stop = None
        for guess in guesses:
            stop = self._should_stop()
            if stop:
                break
            self._run(self.space.params_of(guess), "guess")
        while stop is None:
            stop = self._should_stop()
            best = self.best
            if stop or best is None:
                break
            options = self._neighbours(best)
            if not options:
                break
            params, knob = options[0]
            self._run(params, "neighbour", best.number, knob)  # None: another worker has it
        stop = stop or self._sample()
        if self.shared:
            self._settle()
        best = self.best or base_record
        failures: dict[str, int] = {}
        for r in self.records:
            if not r.measurement.ok and r.measurement.outcome is not Outcome.PRUNED:
                outcome = r.measurement.outcome.value
                failures[outcome] = failures.get(outcome, 0) + 1
        return SearchResult(
            records=list(self.records),
            baseline=base_record,
            best=best,
            stop_reason=stop,
            wall_s=self.clock() - self._started,
            study_name=self.study_name,
            storage=mask_url(self.storage),
            trials_measured=self._measured,
            grid_size=self.space.grid_size(),
            failures=failures,
            pruned=sum(
                r.measurement.outcome is Outcome.PRUNED and r.source != OUT_OF_REACH
                for r in self.records
            ),
            out_of_reach=sum(r.source == OUT_OF_REACH for r in self.records),
            shared=self.shared,
            other_hardware=self._other_hardware,
            by_worker=self._by_worker(),
            marks=self.marks,
        )

    def _settle(self) -> None:
        """Wait for the trials other workers are measuring, so that this worker ends with
        them ranked; a worker that died mid-trial stops beating, and its trial is failed
        after ``GRACE_S``. At most ``GRACE_S`` and two typical trials."""
        deadline = time.monotonic() + GRACE_S + HEARTBEAT_S + 2 * self._typical_trial_s()
        self._refresh()
        if self._in_flight:
            say(
                self.console,
                f"waiting for the {len(self._in_flight)} trial(s) other workers are measuring",
                tag="",
            )
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(HEARTBEAT_S / 2)
            self._refresh()

    def _by_worker(self) -> dict[str, int]:
        """How many of the ranked trials each worker measured (this one as ``here``)."""
        counts: dict[str, int] = {}
        for r in self.records:
            if r.source in ("predicted", "resumed", OUT_OF_REACH):
                continue
            who = r.source.removeprefix("worker ") if r.source.startswith("worker ") else "here"
            counts[who] = counts.get(who, 0) + 1
        return counts

    def _sample(self) -> str:
        """TPE trials until ``patience`` in a row bring no gain, or a limit is hit."""
        without_gain, repeats = 0, 0
        grid = self.space.grid_size()
        while True:
            stop = self._should_stop()
            if stop:
                return stop
            if len(self._by_key) >= grid:
                return f"every one of the {grid} configurations was tried"
            if without_gain >= self.patience:
                return (
                    f"further gain unlikely: {self.patience} sampled trials in a row "
                    "did not beat the best by 1%"
                )
            best_before = self.best.value if self.best else 0.0
            if self.shared:
                self._refresh()
            trial = self._ask()
            cached = self._by_key.get(self._key(dict(trial.params)))
            if cached is None and self._stepped_back(trial) is not None:
                repeats += 1
                if repeats >= 20:
                    return "the sampler keeps proposing configurations other workers measure"
                continue
            if cached is not None:
                # Already measured: tell the sampler what it was, spend no time.
                repeats += 1
                for key, value in feasibility(cached.measurement).items():
                    trial.set_constraint(key, value)
                self.study.tell(trial, cached.value)
                if repeats >= 20:
                    return "the sampler keeps proposing measured configurations"
                without_gain += 1
                continue
            record = self._measure(trial, "sampler", None, None)
            without_gain = 0 if record.value > best_before * GAIN else without_gain + 1
