"""The meter: timed training steps, split into waiting for data and the rest.

A trial's loop tells the meter when it asks the loader for a batch, when the batch arrives
and when the step ends. The meter decides when warm-up is over (step times have settled,
not a fixed count), times a steady-state window bounded by time and by steps, and returns
a :class:`Measurement`. The clock and the CUDA synchronisation are injected, so the timing
logic is tested with a fake clock; on CUDA the meter synchronises during warm-up (to see
when steps settle) and at the window's edges, never inside it.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import psutil
import torch

from autoaccel.states import Outcome

__all__ = [
    "Measurement",
    "Meter",
    "MeterSettings",
    "PruneBelow",
    "PruneTrial",
    "TrialTimeout",
    "classify_failure",
    "compact_curve",
    "process_rss_bytes",
]


CURVE_STORED_POINTS = 128  # a trial's loss curve as the study stores it


class PruneTrial(Exception):
    """Raised by the meter when a trial is clearly slower than the best so far.

    Args:
        template: The message, with ``{rate}`` where the samples/s goes.
        samples_per_s: The rate it ran at, in the process that measured it.

    Example:
        >>> stop = PruneTrial("stopped early: {rate} samples/s is too slow", 1321.4)
        >>> str(stop), str(stop.for_processes(2))  # a rank's rate, then the trial's
        ('stopped early: 1,321 samples/s is too slow', 'stopped early: 2,643 samples/s is too slow')
    """

    def __init__(self, template: str, samples_per_s: float) -> None:
        super().__init__(template.format(rate=f"{samples_per_s:,.0f}"))
        self.template = template
        self.samples_per_s = samples_per_s

    def for_processes(self, world: int) -> PruneTrial:
        """The same stop, quoting the rate of ``world`` processes that each ran this fast."""
        return PruneTrial(self.template, self.samples_per_s * world)


class PruneBelow:
    """Stops a trial running under ``floor`` samples/s.

    In the window (``done`` > 0, the share of it measured) once a fifth is measured; during
    warm-up (``done`` == 0) only when under a quarter of the floor, since warm-up steps run
    slow (loader workers are still filling their queues).
    In-process trials call it; script trials hand ``floor`` to the script.
    """

    def __init__(self, floor: float) -> None:
        self.floor = floor

    def __call__(self, done: float, running: float) -> bool:
        if self.floor <= 0:
            return False
        if done == 0.0:
            return running < self.floor / 4
        return done >= 0.2 and running < self.floor


class TrialTimeout(Exception):
    """Raised by the meter when a trial runs past ``max_trial_s``."""


@dataclass(frozen=True)
class MeterSettings:
    """How long to warm up and how long to measure."""

    min_warmup_steps: int = 3  # worker start, allocator and first-call costs
    settle_steps: int = 3  # warm-up ends when this many step times agree ...
    settle_tolerance: float = 0.3  # ... within this relative spread (max/min - 1)
    max_warmup_s: float = 6.0  # give up waiting for steps to settle (reported)
    window_s: float = 1.5  # the steady-state window, by time ...
    min_window_steps: int = 5  # ... but at least this many steps
    max_window_steps: int = 2_000  # ... and at most this many
    blocks: int = 5  # the window is split into blocks for median and spread
    memory_sample_s: float = 0.05  # how often to read RSS on CPU
    max_trial_s: float = 30.0  # a trial still running after this long is stopped as too slow


@dataclass(frozen=True)
class Measurement:
    """One trial's figures. Times are in seconds, memory in bytes.

    ``samples_per_s`` is the median of per-block throughputs over the steady-state window;
    ``samples_per_s_min``/``max`` give the spread. Warm-up is reported, never mixed in.
    """

    outcome: Outcome
    message: str = ""
    samples_per_s: float = 0.0
    samples_per_s_min: float = 0.0
    samples_per_s_max: float = 0.0
    block_samples_per_s: tuple[float, ...] = ()
    step_time_s: float = 0.0  # median per step in the window
    data_wait_s: float = 0.0  # mean per step in the window, blocked in the loader
    compute_s: float = 0.0  # mean per step in the window, everything else
    warmup_s: float = 0.0
    # The first step alone, from the meter's start: where one-time costs show (worker
    # start, the CUDA context's first kernels, cuDNN's autotuning, compilation).
    first_step_s: float = 0.0
    warmup_steps: int = 0
    warmup_settled: bool = False
    window_s: float = 0.0
    window_steps: int = 0
    samples: int = 0  # samples processed in the window
    peak_memory_bytes: int | None = None
    memory_kind: str = "rss"  # "cuda" (max allocated) or "rss" (process + workers)
    memory_base_bytes: int = 0  # memory in use when the trial started (RSS on CPU)
    losses: tuple[float, ...] = ()
    # Samples trained (over all processes) when each of ``losses`` was seen, warm-up
    # included: the trial's own loss curve, from the same initial weights and data order
    # as every other trial (``autoaccel.time_to_loss.trial_curves``).
    loss_samples: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", Outcome(self.outcome))  # "oom" read back from JSON

    @property
    def ok(self) -> bool:
        """Whether the trial ran to the end of its window with finite losses."""
        return self.outcome is Outcome.OK

    @property
    def data_wait_fraction(self) -> float:
        """Share of each step spent waiting for data (0 to 1)."""
        total = self.data_wait_s + self.compute_s
        return self.data_wait_s / total if total > 0 else 0.0

    @property
    def spread(self) -> float:
        """(max - min) / median of the block throughputs."""
        if self.samples_per_s <= 0:
            return 0.0
        return (self.samples_per_s_max - self.samples_per_s_min) / self.samples_per_s

    @property
    def memory_growth_bytes(self) -> int | None:
        """What the trial itself added to memory: the peak less what was in use before."""
        if not self.peak_memory_bytes:
            return None
        return max(0, self.peak_memory_bytes - self.memory_base_bytes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """The inverse of ``to_dict`` (derived and unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        clean: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known
        }
        return cls(**clean)

    def compacted(self, points: int = CURVE_STORED_POINTS) -> Measurement:
        """This measurement with its loss curve merged into at most ``points`` (for the
        study's storage; ``compact_curve``)."""
        losses, samples = compact_curve(self.losses, self.loss_samples, points)
        return replace(self, losses=losses, loss_samples=samples)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["data_wait_fraction"] = self.data_wait_fraction
        return data


def compact_curve(
    losses: Sequence[float], loss_samples: Sequence[int], points: int = CURVE_STORED_POINTS
) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """At most ``points`` of a trial's curve: runs of consecutive steps merged into their
    sample-weighted mean loss at their last step's samples (``trial_curves.trial_run``
    averages them again, so a stored curve decides as the whole one did, up to rounding).

    Example:
        >>> compact_curve([4.0, 2.0, 1.0, 1.0], [10, 30, 40, 50], points=2)
        ((2.666667, 1.0), (30, 50))
    """
    if len(losses) <= points or len(losses) != len(loss_samples):
        return tuple(losses), tuple(loss_samples)
    per = math.ceil(len(losses) / points)
    out_losses: list[float] = []
    out_samples: list[int] = []
    for start in range(0, len(losses), per):
        chunk = range(start, min(start + per, len(losses)))
        weights = [loss_samples[i] - (loss_samples[i - 1] if i else 0) for i in chunk]
        weighted = sum(losses[i] * w for i, w in zip(chunk, weights, strict=True))
        out_losses.append(round(weighted / (sum(weights) or 1), 6))
        out_samples.append(loss_samples[chunk[-1]])
    return tuple(out_losses), tuple(out_samples)


def process_rss_bytes(process: psutil.Process | None = None) -> int:
    """Resident memory of this process and its children (DataLoader workers)."""
    process = process or psutil.Process()
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            continue  # a worker that exited between listing and reading
    return total


@dataclass
class _Step:
    start: float
    arrived: float
    end: float
    samples: int


@dataclass
class Meter:
    """Times one trial. Call ``fetch_start``/``fetch_end``/``step_end`` around each step.

    Args:
        settings: Warm-up and window lengths.
        clock: Seconds as a float; injected in tests.
        sync: Waits for queued device work (``torch.cuda.synchronize`` on CUDA), or None.
        memory: Reads current memory in bytes (CPU RSS), or None to skip.
        prune: Called with ``(fraction_of_window_done, running_samples_per_s)`` a few times
            per window, and with fraction 0 after each warm-up step past the first;
            returning True stops the trial as clearly slower (``PruneTrial``).

    Example:
        >>> meter = Meter(MeterSettings(window_s=0.0, min_window_steps=1))
        >>> while not meter.done:
        ...     meter.fetch_start(); meter.fetch_end(8); meter.step_end(None)
        >>> meter.result().samples_per_s > 0
        True
    """

    settings: MeterSettings = field(default_factory=MeterSettings)
    clock: Callable[[], float] = time.perf_counter
    sync: Callable[[], None] | None = None
    memory: Callable[[], int] | None = None
    prune: Callable[[float, float], bool] | None = None

    def __post_init__(self) -> None:
        self._warmup: list[_Step] = []
        self._window: list[_Step] = []
        self._losses: list[Any] = []  # floats or detached tensors (no sync per step)
        self._loss_samples: list[int] = []  # samples trained when each loss was seen
        self._trained = 0  # samples trained so far, warm-up included
        self._in_window = False
        self._settled = False
        self._started = self.clock()
        self._window_start = 0.0
        self._window_end = 0.0
        self._fetch_start = 0.0
        self._arrived = 0.0
        self._samples = 0
        self._peak_memory = 0
        self._last_end = self._started
        self._last_memory_read = -math.inf
        self._next_prune_check = 0.0
        self.done = False

    # --- the three calls a training loop makes ---------------------------------------

    def fetch_start(self) -> None:
        """The loop is about to ask the loader for a batch."""
        self._fetch_start = self.clock()

    def fetch_end(self, samples: int) -> None:
        """The batch arrived; it holds ``samples`` samples (in this process)."""
        self._arrived = self.clock()
        self._samples = samples

    @property
    def steps(self) -> int:
        """Steps seen so far, warm-up included."""
        return len(self._warmup) + len(self._window)

    def step_started_at_last_end(self, samples: int) -> None:
        """For loops without a loader: this step began when the last one ended, with no
        data wait known, and holds ``samples`` samples."""
        self._fetch_start = self._arrived = self._last_end
        self._samples = samples

    def step_end(self, loss: Any) -> None:
        """The step is over; ``loss`` is a float, a tensor, or None when not known."""
        now = self.clock()
        step = _Step(self._fetch_start, self._arrived, now, self._samples)
        self._last_end = now
        self._trained += self._samples
        if loss is not None:
            self._losses.append(loss.detach() if isinstance(loss, torch.Tensor) else loss)
            self._loss_samples.append(self._trained)
        self._read_memory(now)
        if now - self._started > self.settings.max_trial_s:
            raise TrialTimeout(
                f"the trial ran past {self.settings.max_trial_s:g} s "
                f"({len(self._warmup) + len(self._window) + 1} steps done)"
            )
        if self._in_window:
            self._window.append(step)
            self._maybe_end_window(now)
        else:
            self._warmup.append(step)
            self._maybe_end_warmup(now)

    # --- phases ------------------------------------------------------------------------

    def _maybe_end_warmup(self, now: float) -> None:
        s = self.settings
        if self.sync is not None:
            self.sync()  # warm-up steps are synchronised so settling is seen truly
            now = self.clock()
            self._warmup[-1].end = now
        if len(self._losses) == 1:
            self._check_first()
        self._check_finite(self._losses[-1:])
        if self.prune is not None and len(self._warmup) >= 2:
            later = self._warmup[1:]  # the first step pays one-off costs
            took = sum(st.end - st.start for st in later)
            running = sum(st.samples for st in later) / max(took, 1e-12)
            if self.prune(0.0, running):
                raise PruneTrial(
                    "stopped in warm-up: {rate} samples/s is far below the best so far", running
                )
        recent = [st.end - st.start for st in self._warmup[-s.settle_steps :]]
        enough = len(self._warmup) >= max(s.min_warmup_steps, s.settle_steps)
        settled = enough and min(recent) > 0 and max(recent) / min(recent) - 1 <= s.settle_tolerance
        if settled or now - self._started >= s.max_warmup_s:
            self._settled = settled
            self._in_window = True
            self._window_start = self.clock()
            self._next_prune_check = self._window_start + s.window_s / s.blocks

    def _maybe_end_window(self, now: float) -> None:
        s = self.settings
        steps = len(self._window)
        if self.prune is not None and now >= self._next_prune_check and steps >= 2:
            self._next_prune_check = now + s.window_s / s.blocks
            samples = sum(st.samples for st in self._window)
            running = samples / max(now - self._window_start, 1e-12)
            if self.prune(min(1.0, (now - self._window_start) / s.window_s), running):
                raise PruneTrial(
                    "stopped early: {rate} samples/s is clearly below the best so far", running
                )
        long_enough = now - self._window_start >= s.window_s and steps >= s.min_window_steps
        if long_enough or steps >= s.max_window_steps:
            if self.sync is not None:
                self.sync()
            self._window_end = self.clock()
            self._window[-1].end = self._window_end
            self.done = True

    def _read_memory(self, now: float) -> None:
        if (
            self.memory is not None
            and now - self._last_memory_read >= self.settings.memory_sample_s
        ):
            self._last_memory_read = now
            self._peak_memory = max(self._peak_memory, self.memory())

    @staticmethod
    def _check_finite(losses: list[Any]) -> None:
        if not losses:
            return
        values = [float(v) for v in losses]
        bad = [v for v in values if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(f"the loss became {bad[0]} (diverged)")

    def _check_first(self) -> None:
        """A loss that is not finite before any update is not divergence: say what it is."""
        first = float(self._losses[0])
        if not math.isfinite(first):
            raise FloatingPointError(
                f"the loss is {first} from the very first step, before any update: the "
                "inputs or targets hold NaN/inf, the loss takes log(0) or divides by zero, or "
                "the initial weights are broken; check e.g. torch.isfinite(x).all()"
            )

    # --- the answer --------------------------------------------------------------------

    def losses(self) -> tuple[float, ...]:
        """Every recorded loss as floats (one synchronisation for all)."""
        if not self._losses:
            return ()
        tensors = [v for v in self._losses if isinstance(v, torch.Tensor)]
        if len(tensors) == len(self._losses):
            return tuple(torch.stack([t.float().reshape(()) for t in tensors]).cpu().tolist())
        return tuple(float(v) for v in self._losses)

    def result(self) -> Measurement:
        """The measurement of a completed window.

        Raises:
            FloatingPointError: a loss in the window is NaN or infinite.
        """
        losses = self.losses()
        self._check_finite(list(losses))
        window = self._window
        if not window:
            raise RuntimeError("the meter has no steady-state steps; the loop ended early")
        s = self.settings
        elapsed = (
            self._window_end - self._window_start
            if self.done
            else window[-1].end - self._window_start
        )
        samples = sum(st.samples for st in window)
        blocks = _split(window, min(s.blocks, len(window)))
        rates = []
        block_start = self._window_start
        for block in blocks:
            block_end = block[-1].end
            rates.append(sum(st.samples for st in block) / max(block_end - block_start, 1e-12))
            block_start = block_end
        median = statistics.median(rates)
        notes = []
        if not self._settled:
            notes.append(f"step times did not settle within {s.max_warmup_s:g} s of warm-up")
        if len(rates) >= 4:
            q = statistics.quantiles(rates, n=4)
            if median > 0 and (q[2] - q[0]) / median > 0.1:
                notes.append(f"noisy: IQR is {(q[2] - q[0]) / median:.0%} of the median")
        waits = [st.arrived - st.start for st in window]
        computes = [st.end - st.arrived for st in window]
        warm = self._warmup
        return Measurement(
            outcome=Outcome.OK,
            samples_per_s=median,
            samples_per_s_min=min(rates),
            samples_per_s_max=max(rates),
            block_samples_per_s=tuple(rates),
            step_time_s=statistics.median(st.end - st.start for st in window),
            data_wait_s=statistics.fmean(waits),
            compute_s=statistics.fmean(computes),
            warmup_s=(warm[-1].end - self._started) if warm else 0.0,
            first_step_s=(warm[0].end - self._started) if warm else 0.0,
            warmup_steps=len(warm),
            warmup_settled=self._settled,
            window_s=elapsed,
            window_steps=len(window),
            samples=samples,
            peak_memory_bytes=self._peak_memory or None,
            losses=losses,
            loss_samples=tuple(self._loss_samples),
            notes=tuple(notes),
        )


def _split(steps: list[_Step], parts: int) -> list[list[_Step]]:
    size, extra = divmod(len(steps), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(steps[start:end])
        start = end
    return out


def classify_failure(error: BaseException) -> tuple[Outcome, str]:
    """The outcome a trial's exception stands for, and a one-line message.

    Out-of-memory is recognised by type (``torch.cuda.OutOfMemoryError``) or by the
    allocators' own words; a non-finite loss is "diverged"; the meter's own stops are
    "pruned" and "timeout"; anything else is "error".
    """
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    lowered = text.lower()
    if (
        isinstance(error, torch.cuda.OutOfMemoryError)
        or "out of memory" in lowered
        or ("can't allocate memory" in lowered)
    ):
        return Outcome.OOM, text
    if isinstance(error, FloatingPointError):
        return Outcome.DIVERGED, text
    if isinstance(error, PruneTrial):
        return Outcome.PRUNED, text
    if isinstance(error, TrialTimeout):
        return Outcome.TIMEOUT, text
    return Outcome.ERROR, f"{type(error).__name__}: {text}"
