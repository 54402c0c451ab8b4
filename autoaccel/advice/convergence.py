"""The advice once the schedule study has spoken: its pick as the config, with evidence.

After the throughput search picked the system settings, the time-to-loss study picks batch
size, LR, warm-up, decay and momentum (``autoaccel.time_to_loss``). This turns its result
into the final ``Advice``: the config follows the pick (or keeps your setup when nothing
reached your losses sooner), the recommendations the pick no longer follows are dropped,
and the provenance records what was measured.
"""

from __future__ import annotations

from dataclasses import replace

from autoaccel.advice.render import same_system
from autoaccel.advice.types import Advice, Recommendation
from autoaccel.config import TrainingConfig
from autoaccel.time_to_loss import ConvergenceResult, runs_after_words
from autoaccel.time_to_loss.shapes import batch_words, schedule_words

__all__ = ["with_convergence"]


def with_convergence(
    advice: Advice, converged: ConvergenceResult, user: TrainingConfig, *, wall_s: float
) -> Advice:
    """The advice with the schedule study's pick as its config, and its evidence."""
    best = converged.best
    # The pick trains with the settings measured fastest at its batch size, which may not
    # be the throughput pick's: keep only the recommendations the final config follows.
    final = (user if best is converged.baseline else best.config).knobs()
    tuned = advice.config.knobs()
    recs = [
        r
        for r in advice.recommendations
        if r.knob is None or (r.knob != "lr_scaling" and final.get(r.knob) == tuned.get(r.knob))
    ]
    evidence = dict(advice.config.provenance.evidence)
    evidence["objective"] = _objective_line(converged)
    if final.get("lr_scaling") != tuned.get("lr_scaling"):  # the study set the LR itself
        evidence.pop("lr_scaling", None)
    # The throughput search's evidence stands only for the values it measured.
    changed = [k for k in evidence if k in final and final[k] != tuned.get(k)]
    if best is converged.baseline:
        for knob in changed:
            evidence[knob] = "yours: the schedule study kept your setup"
        recs.append(_keep_yours(converged))
    else:
        for knob in changed:
            evidence[knob] = (
                "the schedule study's pick trains with the settings measured fastest at its "
                f"global batch ({best.config.global_batch})"
            )
        line = _pick_line(converged)
        evidence["lr"] = evidence["schedule"] = line
        recs.append(_train_like_the_pick(converged, line))
    if converged.plateau is not None:
        recs.append(
            Recommendation(
                "stop early: the held-out loss stops improving within the horizon",
                str(converged.plateau),
                True,
                "early_stopping",
            )
        )
    measured = _measured(advice, converged)
    if not same_system(replace(advice.config, **final), advice.config):
        # the paired speedup and samples/s are the throughput stage's pick's, not written
        for figure in ("samples_per_s", "speedup", "speedup_min", "speedup_max"):
            measured.pop(figure, None)
    provenance = replace(advice.config.provenance, measured=measured, evidence=evidence)
    return replace(
        advice,
        config=replace(advice.config, **final, provenance=provenance),
        recommendations=recs,
        convergence=converged,
        objective=evidence["objective"],
        guard=None,
        notes=[*advice.notes, *converged.notes],
        wall_s=wall_s,
    )


def _measured(advice: Advice, converged: ConvergenceResult) -> dict[str, float]:
    """The provenance's figures, with the held-out ones added."""
    measured = dict(advice.config.provenance.measured)
    measured.update(
        horizon_s=round(converged.horizon_s, 1),
        heldout_loss=round(converged.best.final, 5),
        baseline_heldout_loss=round(converged.baseline.final, 5),
    )
    levels = converged.levels
    if levels:
        key = "target_metric" if levels[-1].metric else "target_heldout_loss"
        measured[key] = round(levels[-1].value, 5)
        measured["baseline_time_to_target_s"] = round(levels[-1].seconds, 2)
    if converged.speedup:
        measured["time_to_loss_speedup"] = round(converged.speedup, 3)
    return measured


def _objective_line(converged: ConvergenceResult) -> str:
    line = f"time-to-loss: the soonest to reach {converged.aim} ({converged.holdout})"
    if len(converged.levels) > 1:
        line += (
            f", as your setup reaches them in {converged.horizon_s:.0f} s of training (each "
            "new best of its curve, up to where it flattens)"
        )
    return line


def _keep_yours(converged: ConvergenceResult) -> Recommendation:
    """Nothing reached your losses sooner than your own setup: keep it as it is."""
    evidence = (
        f"your setup {converged.baseline.final:.4g} after {converged.horizon_s:.0f} s; "
        f"{len(converged.runs)} candidates tried"
    )
    check = converged.check
    if check is not None and check.speedup:
        evidence += f"; the best measured again: {check.speedup:.2f}x"
    return Recommendation(
        "keep your batch size and LR: no candidate reached "
        f"{converged.aim or 'your losses'} sooner",
        evidence,
        True,
        "lr",
    )


def _pick_line(converged: ConvergenceResult) -> str:
    """How much sooner the pick reached your losses, as measured (and measured again)."""
    best, levels, took = converged.best, converged.levels, converged.time_to_baseline_loss
    if levels and took is not None and best.speedup:
        line = (
            f"reached {levels[-1].value:.4g} in {took:.1f} s of training (yours "
            f"{levels[-1].seconds:.1f} s); {best.speedup:.2f}x sooner to {converged.aim}"
        )
    else:
        line = f"held-out loss {best.final:.4g} vs yours {converged.baseline.final:.4g}"
    again = converged.check
    if again is not None and again.ok and again.speedup:
        line += f"; measured again for the whole horizon: {again.speedup:.2f}x"
    elif again is not None:
        line += f"; measured again: {again.outcome} ({again.message})"
    if converged.after_search:
        line += f"; {runs_after_words(converged.after_search)}"
    return line


def _train_like_the_pick(converged: ConvergenceResult, line: str) -> Recommendation:
    config = converged.best.config
    text = f"train at {batch_words(config)} with peak lr {config.lr:g}, {schedule_words(config)}"
    if config.momentum:
        text += f", momentum {config.momentum:g}"
    return Recommendation(text, line, True, "lr")
