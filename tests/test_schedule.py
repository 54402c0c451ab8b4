from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from models import mlp, tabular

from autoaccel.config import TrainingConfig
from autoaccel.schedule import (
    RangeSweep,
    apply_lr,
    apply_momentum,
    build_scheduler,
    lr_factor,
    momentum_of,
    scale_lr,
    scaling_rule,
    suggest_lr,
)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("constant", [0.5, 1.0, 1.0, 1.0, 1.0]),
        ("linear", [0.5, 1.0, 1.0, 0.5, 0.0]),
        ("cosine", [0.5, 1.0, 1.0, 0.5, 0.0]),
        ("one-cycle", [0.5, 1.0, 1.0, 0.52, 0.04]),
    ],
)
def test_schedule_shapes(shape: str, expected: list[float]) -> None:
    f = lr_factor(TrainingConfig(warmup_steps=2, schedule=shape, schedule_steps=12))
    assert [round(f(s), 2) for s in (0, 1, 2, 7, 12)] == expected


def test_a_constant_schedule_needs_no_scheduler() -> None:
    model = mlp()
    assert build_scheduler(torch.optim.SGD(model.parameters(), lr=0.1), TrainingConfig()) is None


def test_apply_lr_keeps_group_ratios() -> None:
    model = mlp()
    optimizer = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 0.1},
            {"params": model[2].parameters(), "lr": 0.01},
        ]
    )
    notes = apply_lr(optimizer, 0.3)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.3, 0.03])
    assert "scaled by the same 3x" in notes[0]


def test_range_test_on_a_real_model_stops_on_divergence() -> None:
    x, y = tabular(256)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-7)

    def step(lr: float) -> float:
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    sweep = RangeSweep(min_lr=1e-4, max_lr=1e3, steps=80)
    while not sweep.record(step(sweep.lr)):
        pass
    finding = sweep.finding()
    assert "diverged" in finding.reason or "became" in finding.reason
    assert finding.suggestion is not None and 1e-4 < finding.suggestion < 10
    assert finding.confidence in ("high", "low")


def test_suggestion_is_below_the_minimum_not_at_the_cliff() -> None:
    lrs = [10 ** (i / 10) for i in range(-50, 1)]  # 1e-5 .. 1

    # Flat, then falling fastest around 1e-3, lowest near 3e-2, then a cliff up to 1.
    def loss(lr: float) -> float:
        falling = 2.0 - 1.5 / (1 + math.exp(-(math.log10(lr) + 3) * 3))
        return falling if lr <= 0.03 else falling + 20 * (math.log10(lr) + 1.5)

    losses = [loss(lr) for lr in lrs]
    lr, confidence, reason = suggest_lr(lrs, losses)
    assert lr is not None and 3e-4 < lr < 3e-3
    assert confidence == "high" and "steepest descent below the loss minimum" in reason
    # Cut off while still falling (a sweep that ran out of time): the minimum is unknown.
    falling = [v for lr, v in zip(lrs, losses, strict=True) if lr <= 0.01]
    lr, confidence, reason = suggest_lr(lrs[: len(falling)], falling)
    assert confidence == "low" and "still falling at the last step" in reason


def test_too_short_a_curve_gives_no_suggestion() -> None:
    assert suggest_lr([1e-3, 1e-2], [1.0, 0.9])[0] is None
    with pytest.raises(ValueError, match=r"`0 < min_lr < max_lr` must hold"):
        RangeSweep(min_lr=1.0, max_lr=0.1)


def test_the_default_rule_follows_the_optimizer_family() -> None:
    params = [torch.zeros(1, requires_grad=True)]
    assert scaling_rule(torch.optim.SGD(params, lr=0.1))[0] == "linear"
    assert scaling_rule(torch.optim.AdamW(params, lr=0.1))[0] == "sqrt"
    assert scaling_rule("Adam")[0] == "sqrt"
    rule, why = scaling_rule(torch.optim.LBFGS(params))
    assert rule == "sqrt" and "cautious" in why


def test_scale_lr_rules() -> None:
    params = [torch.zeros(1, requires_grad=True)]
    sgd = torch.optim.SGD(params, lr=0.1)
    assert scale_lr(sgd, 32, 32, "linear") == []
    assert scale_lr(sgd, 32, 128, "none") == []
    scale_lr(sgd, 32, 128, "sqrt")
    assert sgd.param_groups[0]["lr"] == pytest.approx(0.2)
    scale_lr(sgd, 128, 64, "linear")
    assert sgd.param_groups[0]["lr"] == pytest.approx(0.1)


def test_momentum_is_refused_where_there_is_none() -> None:
    params = [torch.zeros(1, requires_grad=True)]
    plain = torch.optim.SGD(params, lr=0.1)
    assert momentum_of(plain) is None
    assert "not applied" in apply_momentum(plain, 0.9)[0]


def test_a_loss_that_is_nan_from_the_first_step_is_named() -> None:
    sweep = RangeSweep(steps=20)
    assert sweep.record(float("nan"))  # the sweep stops at once
    finding = sweep.finding()
    assert finding.suggestion is None
    assert "at the very first step" in finding.reason and "NaN" in finding.reason
