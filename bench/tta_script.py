"""A reference workload as a training script, for ``autoaccel tune`` in the benchmarks.

    python bench/tta_script.py --workload cnn [--no-hook]

The same model, data split, optimizer (AdamW, lr 1e-3), batch (32) and loop as
``bench/time_to_accuracy.py``'s default, so a config tuned on this script applies there.
With the hook (the default) it passes ``prepare()`` its validation loss and accuracy; with
``--no-hook`` it reports nothing held out, as most scripts do today.

    autoaccel run --config pick.yaml bench/tta_script.py -- --workload cnn \
        --to-target 0.95 --seed 0 --result out.json [--eval-every-samples 320]

trains with the config (under torchrun when it asks for several processes) in
``time_to_accuracy.train_until``'s loop until the validation accuracy reaches the target
(evaluated every ``--eval-every-samples`` samples trained), and rank 0 writes the training
seconds and samples to it (null: not within the cap) and the best accuracy: how
``bench/tune_time_to_accuracy.py`` times every pick, in one way for all.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))

from time_to_accuracy import (
    USER_BATCH,
    adamw,
    as_dataset,
    eval_every_argument,
    split,
    train_until,
)
from workloads import WORKLOADS

import autoaccel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    parser.add_argument("--no-hook", action="store_true", help="report nothing held out")
    parser.add_argument("--steps", type=int, default=300, help="steps in a normal run")
    parser.add_argument("--to-target", type=float, help="train until this validation accuracy")
    parser.add_argument("--seed", type=int, default=0, help="the data order (with --to-target)")
    parser.add_argument("--result", type=Path, help="where rank 0 writes the time to target")
    eval_every_argument(parser)
    args = parser.parse_args()
    if args.to_target is not None:
        to_target(args)
        return

    model, data, _ = WORKLOADS[args.workload]()
    train, val = split(data)
    optimizer = adamw(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    val_batches = list(DataLoader(as_dataset(val), batch_size=512))

    def evaluate() -> dict[str, float]:
        total = right = count = 0.0
        for x, y in val_batches:
            out = model(x)
            total += float(loss_fn(out.reshape(-1, out.shape[-1]), y.reshape(-1))) * y.numel()
            right += float((out.argmax(-1) == y).sum())
            count += y.numel()
        return {"loss": total / count, "accuracy": right / count}

    run = autoaccel.prepare(
        model,
        optimizer,
        as_dataset(train),
        loader_kwargs={"batch_size": USER_BATCH, "shuffle": True},
        evaluate=None if args.no_hook else evaluate,
    )
    steps = 10**9 if autoaccel.in_trial() else args.steps
    done = 0
    while done < steps:
        for x, y in run.loader:
            with run.autocast():
                out = run.model(x)
                loss = loss_fn(out.reshape(-1, out.shape[-1]).float(), y.reshape(-1))
            run.backward(loss)
            run.step()
            done += 1
            if done >= steps:
                break
    if not autoaccel.in_trial():
        with torch.no_grad():
            print(f"validation: {evaluate()}", flush=True)


def to_target(args: argparse.Namespace) -> None:
    """Train with the config until the validation accuracy reaches ``--to-target``."""
    model, data, _ = WORKLOADS[args.workload]()
    train, val = split(data)
    torch.manual_seed(args.seed)  # the data order, in one process and shared under torchrun
    run = autoaccel.prepare(
        model,
        adamw(model.parameters()),
        as_dataset(train),
        loader_kwargs={"batch_size": USER_BATCH, "shuffle": True},
    )
    rank0 = not run.distributed or dist.get_rank() == 0
    try:
        reached = train_until(
            run,
            model,
            val,
            (args.to_target,),
            evaluates=rank0,
            agree=agree if run.distributed else None,
            every_samples=args.eval_every_samples,
        )
    finally:
        run.close()
    if rank0 and args.result:
        target = args.to_target
        figures = {"seconds": reached.seconds[target], "samples": reached.samples[target]}
        args.result.write_text(json.dumps({**figures, "best": reached.best}))


def agree(stop: bool) -> bool:
    """Rank 0's decision, on every rank."""
    flag = torch.tensor([1 if stop else 0])
    dist.broadcast(flag, src=0)
    return bool(flag.item())


if __name__ == "__main__":
    main()
