"""What the held-out loss is scored on: a validation set, or training samples held out."""

from __future__ import annotations

import pytest
from models import Pairs, learnable

from autoaccel.errors import DataError
from autoaccel.runtime.data import describe_data
from autoaccel.time_to_loss import (
    holdout_split,
)


def test_held_out_samples_are_never_trained_on() -> None:
    x, y = learnable(1000)
    spec = describe_data((x, y), loader_kwargs={"batch_size": 32})
    train, holdout = holdout_split(spec)
    assert len(train) == 900 and len(holdout.spec) == 100
    assert train.tensors is not None and holdout.spec.tensors is not None
    seen = {tuple(row.tolist()) for row in train.tensors[0]}
    assert not any(tuple(row.tolist()) in seen for row in holdout.spec.tensors[0])
    assert "held out" in holdout.source

    dataset = describe_data(Pairs(200), loader_kwargs={"batch_size": 8})
    train, holdout = holdout_split(dataset)
    assert (len(train), len(holdout.spec)) == (180, 20)


def test_bad_validation_data_is_named() -> None:
    spec = describe_data(learnable(1000), loader_kwargs={"batch_size": 64})
    with pytest.raises(DataError, match="validation set has 10 samples, fewer than one batch"):
        holdout_split(spec, learnable(10))
    small = describe_data(learnable(100), loader_kwargs={"batch_size": 64})
    with pytest.raises(DataError, match="too few to hold 64 out"):
        holdout_split(small)
    _, holdout = holdout_split(spec, learnable(300))
    assert holdout.source == "the validation set (300 samples)"
