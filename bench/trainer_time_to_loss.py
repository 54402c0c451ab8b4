"""Time to the script's own validation loss: the Lightning and Hugging Face examples tuned
with ``--objective time-to-loss``, then trained again on data orders the tune never saw.

For each example (``examples/train_lightning.py``, ``examples/train_hf.py``):

1. ``autoaccel tune <example> --objective time-to-loss`` at its default budget (8 minutes;
   ``--budget`` to change it) through ``tune_script``, in a scratch folder, its transcript
   printed; the written config is the pick;
2. for each of ``--seeds`` data orders (100, 101, ...; the tune trained on orders 0-2), your
   setup and the pick each train for the tune's horizon (the training time your setup got
   in the tune, about the script's own three epochs), in turn, through the script's real
   Trainer in a loss-curve run (the same script session the tune's schedule study uses,
   which applies a config as ``autoaccel run`` does), with the validation loss (Lightning's
   ``validation_step``, HF's ``Trainer.evaluate()``) scored at even intervals;
3. on each order, three figures, each above 1 when the pick is sooner:
   - **pace**, the tune's own measure (``curves.pace_of``): the geometric mean, over every
     new best validation loss of your setup's curve up to where it flattens, of your time
     to it over the pick's (a level the pick missed counts as the tune counts it);
   - **to best**, your training seconds to your setup's best validation loss over the
     pick's ("missed": the pick never reached it);
   - **fair pace**: both runs' pace to the levels of a *reference* run of your setup on a
     data order of its own (99), yours over the pick's. The first two take their levels
     from your run on the same order, whose own dips set them, so they favour your run:
     two runs of one setup scored 0.55-0.99x by pace there (2026-12-06). The reference
     run favours neither;
   - **to your script's loss**, issue 35's own measure: your seconds over the pick's to the
     validation loss your script ends its own training at (``--own-epochs``, the examples'
     default 3, over its data), read off the reference run at that many samples. It lies
     on the curve's steep part, where one evaluation's noise moves the time to it less
     than near the floor, where the other figures' last levels lie.

The table prints each order's figures and their medians. Where the tune kept your setup,
both runs train the same setup, and the figures are this machine's noise floor for one
comparison. Run it alone on the machine: start-up is not counted, but two runs side by
side slow each other's training.

    python bench/trainer_time_to_loss.py [--examples lightning hf] [--seeds 3] [--budget S]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from autoaccel.config import TrainingConfig
from autoaccel.curves import Level, LossRun, find_plateau, pace_of, target_levels
from autoaccel.frontends.script import tune_script
from autoaccel.pipeline import TUNE, PipelineOptions
from autoaccel.probe import probe_system
from autoaccel.scoring import Scoring
from autoaccel.trials.script import ScriptRunner
from autoaccel.trials.script_curves import ScriptTrainer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = {"lightning": EXAMPLES / "train_lightning.py", "hf": EXAMPLES / "train_hf.py"}
FIRST_ORDER = 100  # data orders the tune never trained on (it uses 0, 1, 2)
REFERENCE_ORDER = 99  # your setup's reference run: the levels of the fair pace
REFERENCE_LONGER = 1.5  # the reference run trains this many times your own training


def tuned(script: Path, work: Path, budget_s: float | None) -> tuple[TrainingConfig, float, str]:
    """The config ``tune --objective time-to-loss`` writes, its horizon, its objective line."""
    options = PipelineOptions.checked(
        TUNE,
        objective="time-to-loss",
        budget_s=budget_s,
        storage=str(work / "study.db"),
        seed=0,
    )
    console = Console(width=100, soft_wrap=True)  # the tune's transcript, into the log
    result = tune_script(script, (), options, out=work / "autoaccel.yaml", console=console)
    advice = result.advice
    converged = advice.convergence
    if converged is None:
        raise SystemExit(f"{script.name}: the tune ran no schedule study ({advice.notes})")
    return advice.config, converged.horizon_s, advice.objective


def sooner(yours: LossRun, pick: LossRun) -> tuple[float, float, float | None]:
    """(target, your seconds to it, the pick's seconds to it or None): the target is the
    best validation loss your setup reached."""
    target = yours.best_loss
    took = yours.time_to(target)
    assert took is not None  # its own best is on its curve
    return target, took, pick.time_to(target)


def own_loss(reference: LossRun, samples: float) -> float | None:
    """The run's held-out loss after ``samples`` trained (your setup's own training),
    interpolated between its evaluations (from the untrained model's at 0); None when it
    trained fewer samples."""
    batch = reference.config.global_batch
    points = [(0.0, reference.start_loss)] if reference.start_loss is not None else []
    points += [(p.step * batch, p.loss) for p in reference.curve]
    for (s0, l0), (s1, l1) in itertools.pairwise(points):
        if s0 <= samples <= s1:
            return l0 + (l1 - l0) * (samples - s0) / (s1 - s0)
    return None


def pace_speedup(yours: LossRun, pick: LossRun, horizon_s: float) -> float:
    """How many times sooner the pick reached your setup's levels, as the tune scores it."""
    levels = target_levels(yours, find_plateau(yours.curve))
    return 1 / pace_of(pick, levels, horizon_s)


@dataclass(frozen=True)
class Scene:
    """One example's script ready to train: its trainer, your setup, the scoring, the
    reference run's levels and your script's own validation loss (read once, so that every
    setup compared is timed to the same loss)."""

    script: Path
    trainer: ScriptTrainer
    user: TrainingConfig
    scoring: Scoring
    horizon_s: float
    levels: list[Level]
    own: float
    own_s: float | None  # your script's own training at its trial's samples/s
    own_samples: float  # your script's own training, in samples


def scene(
    script: Path, horizon_s: float | None, work: Path, own_epochs: float, evals: int
) -> Scene:
    """``script`` with its own settings measured once (its baseline trial), and your
    setup's reference run on its own data order (``REFERENCE_ORDER``) for ``horizon_s``
    (None: your script's own training time, at least the tune's floor)."""
    options = PipelineOptions.checked(TUNE)
    runner = ScriptRunner(
        script,
        (),
        trials_dir=work / "runs",
        settings=options.settings,
        timeout_s=options.trial_timeout_s,
    )
    first = runner.run(None)
    report = first.report
    if report is None or not first.measurement.ok:
        raise SystemExit(f"{script.name} fails with its own settings: {first.log_path}")
    trainer = ScriptTrainer(runner, report, None)
    user = TrainingConfig.from_dict({**report.user_config})
    rate = first.measurement.samples_per_s
    own_s = report.own_samples / rate if report.own_samples and rate else None
    if horizon_s is None:
        horizon_s = max(4 * options.settings.window_s, own_s or 0.0)
    start = tuple(report.held_out_start) if report.held_out_start else None
    scoring = Scoring(evals=evals, start=start)  # type: ignore[arg-type]
    # Trained past the horizon, to read your script's own loss where a curve run trains
    # slower than its trial (a reference run of the HF example trained 11,680 samples in
    # 6 s, short of its own 12,288); the levels are its curve's within the horizon.
    longer_s = max(horizon_s, REFERENCE_LONGER * (own_s or 0.0))
    reference = trainer.train_for(user, seconds=longer_s, scoring=scoring, seed=REFERENCE_ORDER)
    if not reference.ok:
        raise SystemExit(f"{script.name}, reference run: {reference.message}")
    within = replace(reference, curve=tuple(p for p in reference.curve if p.seconds <= horizon_s))
    levels = target_levels(within, find_plateau(within.curve))
    samples = own_epochs * (report.dataset_size or 0)
    own = own_loss(reference, samples)
    if own is None:
        raise SystemExit(
            f"the reference run trained {reference.curve[-1].step * user.global_batch:,} "
            f"samples in {longer_s:.1f} s, short of your script's {samples:,.0f}: give a "
            "longer --horizon or --budget"
        )
    print(f"  {script.stem}: your script's own validation loss {own:.4f}", flush=True)
    return Scene(script, trainer, user, scoring, horizon_s, levels, own, own_s, samples)


def compare(at: Scene, pick: TrainingConfig, seeds: int) -> tuple[list[dict[str, Any]], bool]:
    """Your setup and the pick, each trained for the horizon on each data order, in turn;
    whether the pick is your setup."""
    trainer, user, scoring, horizon_s, own = at.trainer, at.user, at.scoring, at.horizon_s, at.own
    kept = pick.knobs() == user.knobs()
    if kept:
        print(f"  {at.script.stem}: the pick is your setup; both runs train the same", flush=True)
    rows = []
    for order in range(FIRST_ORDER, FIRST_ORDER + seeds):
        runs = {
            label: trainer.train_for(config, seconds=horizon_s, scoring=scoring, seed=order)
            for label, config in (("yours", user), ("pick", pick))
        }
        for label, run in runs.items():
            if not run.ok:
                raise SystemExit(f"{at.script.name}, {label}, order {order}: {run.message}")
        target, yours_s, pick_s = sooner(runs["yours"], runs["pick"])
        here = own_loss(runs["yours"], at.own_samples)  # where your run ends on this order
        rows.append(
            {
                "order": order,
                "target_loss": round(target, 5),
                "yours_s": round(yours_s, 2),
                "pick_s": None if pick_s is None else round(pick_s, 2),
                "pace": round(pace_speedup(runs["yours"], runs["pick"], horizon_s), 3),
                "to_best": None if not pick_s else round(yours_s / pick_s, 3),
                "fair_pace": round(
                    pace_of(runs["yours"], at.levels, horizon_s)
                    / pace_of(runs["pick"], at.levels, horizon_s),
                    3,
                ),
                "pick_best_loss": round(runs["pick"].best_loss, 5),
                "yours_own_s": _seconds(runs["yours"].time_to(own)),
                "pick_own_s": _seconds(runs["pick"].time_to(own)),
                "to_own": _ratio(runs["yours"].time_to(own), runs["pick"].time_to(own)),
                "own_here": None if here is None else round(here, 5),
                "to_own_here": None
                if here is None
                else _ratio(runs["yours"].time_to(here), runs["pick"].time_to(here)),
                "yours_samples_per_s": _rate(runs["yours"]),
                "pick_samples_per_s": _rate(runs["pick"]),
            }
        )
        print(f"  {at.script.stem} order {order}: {json.dumps(rows[-1])}", flush=True)
    return rows, kept


def _rate(run: LossRun) -> float | None:
    """The run's samples per training second, from its last evaluation."""
    last = run.curve[-1] if run.curve else None
    if last is None or not last.seconds:
        return None
    return round(last.step * run.config.global_batch / last.seconds, 1)


def _ratio(yours_s: float | None, pick_s: float | None) -> float | None:
    """Your seconds over the pick's: None where the pick never got there, infinite where
    only the pick did (your run missed it in the horizon: the pick was sooner)."""
    if pick_s is None or not pick_s:
        return None
    return math.inf if yours_s is None else round(yours_s / pick_s, 3)


def _seconds(took: float | None) -> float | None:
    return None if took is None else round(took, 2)


def _shown(ratio: float | None) -> str:
    """A ratio as the table shows it."""
    if ratio is None:
        return "missed"
    return "yours missed" if math.isinf(ratio) else f"{ratio:.2f}x"


def summary(
    rows: list[dict[str, Any]], pick: TrainingConfig, kept: bool, at: Scene
) -> dict[str, Any]:
    """One pick's figures over the data orders, with their medians."""
    return {
        "horizon_s": round(at.horizon_s, 1),
        "pick": pick.knobs(),
        "kept_yours": kept,
        "orders": rows,
        "median_pace": round(statistics.median(r["pace"] for r in rows), 3),
        "median_to_best": round(statistics.median(r["to_best"] or 0.0 for r in rows), 3),
        "median_fair_pace": round(statistics.median(r["fair_pace"] for r in rows), 3),
        "own_loss": round(at.own, 5),
        "median_to_own": round(statistics.median(r["to_own"] or 0.0 for r in rows), 3),
        "median_to_own_here": round(statistics.median(r["to_own_here"] or 0.0 for r in rows), 3),
        "median_samples_per_s_ratio": round(
            statistics.median(
                r["pick_samples_per_s"] / r["yours_samples_per_s"]
                for r in rows
                if r["pick_samples_per_s"] and r["yours_samples_per_s"]
            ),
            3,
        ),
    }


def setups_of(path: Path, user: TrainingConfig) -> list[tuple[str, TrainingConfig]]:
    """The setups a ``--setups`` file names: a JSON list of {"name", "knobs"}, each knobs
    a change to your setup (``TrainingConfig`` fields)."""
    try:
        entries = json.loads(path.read_text())
        return [
            (str(e["name"]), TrainingConfig.from_dict({**user.to_dict(), **e["knobs"]}))
            for e in entries
        ]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"--setups {path}: {e} (a JSON list of {{name, knobs}})") from e


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--examples", nargs="+", choices=sorted(SCRIPTS), default=["lightning", "hf"]
    )
    parser.add_argument("--seeds", type=int, default=3, help="data orders to train on")
    parser.add_argument(
        "--budget", type=float, help="the tune's budget, s (default: the time-to-loss default)"
    )
    parser.add_argument(
        "--own-epochs",
        type=float,
        default=3,
        help="passes over the data your script's own training makes (the examples' --epochs)",
    )
    parser.add_argument("--evals", type=int, default=12, help="evaluations per run")
    parser.add_argument(
        "--setups",
        type=Path,
        help="no tune: compare the setups this JSON file names (one example), e.g. "
        "bench/data/hf_setups.json",
    )
    parser.add_argument(
        "--horizon",
        type=float,
        help="with --setups: training seconds per run (default: your script's own training)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.setups and len(args.examples) != 1:
        raise SystemExit("--setups compares setups of one example: give --examples hf or lightning")
    profile = probe_system()
    what = (
        f"setups {args.setups}"
        if args.setups
        else f"tune budget {args.budget or TUNE.ttl_budget_s:g} s"
    )
    print(
        f"# {profile.describe()} (ISA: {', '.join(profile.cpu.flags) or 'none'}); "
        f"{what}; {args.seeds} data orders",
        flush=True,
    )
    results: dict[str, Any] = {}
    for name in args.examples:
        script = SCRIPTS[name]
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            if args.setups:
                at = scene(script, args.horizon, work, args.own_epochs, args.evals)
                print(
                    f"{name}: horizon {at.horizon_s:.1f} s (your script's own training "
                    f"{at.own_s or 0:.1f} s)",
                    flush=True,
                )
                for label, pick in setups_of(args.setups, at.user):
                    print(f"{name}: {label}: {json.dumps(pick.knobs(), default=str)}", flush=True)
                    rows, kept = compare(at, pick, args.seeds)
                    results[label] = summary(rows, pick, kept, at)
                continue
            pick, horizon_s, objective = tuned(script, work, args.budget)
            print(f"{name}: {objective}", flush=True)
            print(f"{name}: pick {json.dumps(pick.knobs(), default=str)}", flush=True)
            at = scene(script, horizon_s, work, args.own_epochs, args.evals)
            rows, kept = compare(at, pick, args.seeds)
            results[name] = summary(rows, pick, kept, at)
    print(
        "\nexample    pick        horizon  pace per order (median)   to best per order (median)"
        "   fair pace per order (median)   to your script's loss per order (median)"
        "   to where yours ends on the order (median)   samples/s (median)"
    )
    for name, found in results.items():
        rows = found["orders"]
        pace = ", ".join(f"{r['pace']:.2f}x" for r in rows)
        best = ", ".join(f"{r['to_best']:.2f}x" if r["to_best"] else "missed" for r in rows)
        fair = ", ".join(f"{r['fair_pace']:.2f}x" for r in rows)
        own = ", ".join(_shown(r["to_own"]) for r in rows)
        here = ", ".join(_shown(r["to_own_here"]) for r in rows)
        what = "your setup" if found["kept_yours"] else "tuned" if name in SCRIPTS else "setup"
        if len(name) > 10:  # a --setups label: on a line of its own
            print(name)
            name = ""
        print(
            f"{name:<10} {what:<11} {found['horizon_s']:>5.1f} s  {pace} "
            f"({found['median_pace']:.2f}x)   {best} ({found['median_to_best']:.2f}x)   "
            f"{fair} ({found['median_fair_pace']:.2f}x)   {own} "
            f"({_shown(found['median_to_own'])}, to {found['own_loss']:.4f})   "
            f"{here} ({_shown(found['median_to_own_here'])})   "
            f"{found['median_samples_per_s_ratio']:.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
