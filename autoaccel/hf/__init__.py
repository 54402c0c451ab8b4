"""Hugging Face ``Trainer`` scripts tuned with one changed line.

    from transformers import Trainer, TrainingArguments      # before
    from autoaccel.hf import Trainer, TrainingArguments      # after

(or ``transformers.Trainer(...)`` -> ``autoaccel.hf.Trainer(...)``; ``TrainingArguments``
here is transformers' own, named so that the import line is all that changes).

``autoaccel tune train.py`` then measures its trials and a normal run applies
``autoaccel.yaml``. A subclass of ``transformers.Trainer`` with the same arguments: the
config is applied to a copy of your ``TrainingArguments`` before the Trainer builds its
accelerator from them, and a trial is measured around the Trainer's own steps (the batches
it fetches, each micro-batch's loss, each optimizer step).

What it applies, as ``TrainingArguments`` fields (your values are the baseline; a normal
run names each one it changes, in one line):

- batch size per device, accumulation: ``per_device_train_batch_size``,
  ``gradient_accumulation_steps``;
- precision: ``bf16`` / ``fp16`` (TF32: ``tf32``); the device: ``use_cpu``;
- loader workers, pinning, persistence, prefetch: ``dataloader_*``;
- compilation: ``torch_compile``;
- the LR (the config's, or yours scaled with the global batch by its rule):
  ``learning_rate``.

The tuned warm-up and schedule are autoaccel's own scheduler (the one ``prepare()`` runs,
one-cycle included), made where the Trainer makes its own and stretched over the whole
run, as ``prepare(total_steps=)`` does; a scheduler you pass the Trainer wins. The tuned
momentum (Adam's beta1, SGD's momentum) is set in the optimizer the Trainer made. Threads
and cuDNN autotuning are process settings; channels_last converts the model. Several
processes run as HF runs them, under torchrun (``autoaccel run`` and the trials start it).
Not applied: a fused optimizer (HF's ``optim`` picks it), said when a config holds one.

Under ``accelerate launch``, its config file's precision and compile backend (which HF
takes from the environment where your arguments name none) count as yours; a config's
precision and compilation overrule them, said in the same line.

A DeepSpeed config in your arguments (``deepspeed=``) is yours where it sets a value itself
(not ``"auto"``): HF refuses arguments that differ from it, so its batch, accumulation,
precision, LR, betas and scheduler win over the config (said in one line) and are not
searched (``autoaccel.launchers.deepspeed_pins``).

With an ``eval_dataset``, the Trainer's own ``evaluate()`` (its ``eval_loss``, and each
``eval_*`` metric under its name without the prefix) is the held-out score of a tuner's
loss curves, so ``autoaccel tune --objective time-to-loss`` needs no hook of its own.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
import transformers

from autoaccel.config import TrainingConfig
from autoaccel.errors import DataError, UsageError
from autoaccel.hf._tuning import (
    FIXED,
    Tuning,
    TuningCallback,
    launcher_overruled,
    loss_of,
    rank,
    samples_in,
    world_size,
)
from autoaccel.process import preserved_process_state
from autoaccel.runtime.prepare import for_this_model
from autoaccel.runtime.run import has_conv

__all__ = ["FIXED", "Trainer", "TrainingArguments"]

TrainingArguments = transformers.TrainingArguments


class Trainer(transformers.Trainer):
    """``transformers.Trainer`` that trains with ``autoaccel.yaml`` (or a tuner's trial).

    Args:
        autoaccel_config: A ``TrainingConfig`` or the path of a config; the default looks
            for autoaccel.yaml as ``prepare()`` does.
        **kwargs: ``transformers.Trainer``'s arguments, unchanged (``args`` included).

    Raises:
        UsageError: positional arguments, no ``args`` or ``train_dataset`` without a
            length, or a config whose strategy is FSDP.

    Example:
        >>> trainer = autoaccel.hf.Trainer(model=model, args=args,      # doctest: +SKIP
        ...                                train_dataset=train, eval_dataset=val)
        >>> trainer.train()                                             # doctest: +SKIP
    """

    def __init__(
        self,
        *args: Any,
        autoaccel_config: TrainingConfig | str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if args:
            raise UsageError(
                "autoaccel.hf.Trainer takes its arguments by name (e.g. Trainer(model=model, "
                "args=training_args, train_dataset=data))"
            )
        given = kwargs.get("args")
        if not isinstance(given, transformers.TrainingArguments):
            raise UsageError(
                "autoaccel.hf.Trainer needs args=TrainingArguments(...): they are the "
                "settings autoaccel measures as yours"
            )
        model = kwargs.get("model")
        self._autoaccel = Tuning.start(given, kwargs.get("train_dataset"), autoaccel_config)
        chosen = self._autoaccel.chosen
        if chosen is not None and isinstance(model, torch.nn.Module):
            # tuned for another script or model: its LR settings are not applied (warned)
            chosen = self._autoaccel.chosen = for_this_model(chosen, model)
        own_optimizer, own_scheduler = (
            x is not None for x in kwargs.get("optimizers") or (None, None)
        )
        self._autoaccel.own_scheduler = own_scheduler
        kwargs["args"] = self._autoaccel.arguments(given, own_optimizer)
        callbacks = [*(kwargs.pop("callbacks", None) or []), TuningCallback(self._autoaccel)]
        if chosen is not None and chosen.channels_last and model is not None and has_conv(model):
            model.to(memory_format=torch.channels_last)
        with launcher_overruled(chosen is not None):  # the accelerator reads it here
            super().__init__(**kwargs, callbacks=callbacks)
        if self.eval_dataset is not None:
            self._autoaccel.evaluate = self._held_out

    def _held_out(self) -> dict[str, float]:
        """``evaluate()`` on your eval_dataset, as a tuner's held-out score: ``loss`` and
        each metric, named without HF's ``eval_`` prefix."""
        if self._autoaccel.loss_scaling_unchecked(self):
            with preserved_process_state(rng=True):  # a loader's iterator draws a seed
                first = next(iter(self.get_eval_dataloader()), None)
            self._check_loss_scaling([] if first is None else [first])
        found = self.evaluate()
        if "eval_loss" not in found:
            raise DataError(
                f"Trainer.evaluate() gave no eval_loss (it gave {', '.join(found)}); the "
                "eval_dataset needs labels for the model to return a loss"
            )
        return {
            name.removeprefix("eval_"): value
            for name, value in found.items()
            if name.startswith("eval_") and isinstance(value, (int, float))
        }

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> Any:
        """HF's scheduler, or the tuned schedule where the config has one (a scheduler you
        passed the Trainer wins). In a trial, HF's spans the run your arguments would make
        with the trial's batch (``Tuning.run_steps``), not the trial's open-ended one."""
        if self.lr_scheduler is not None and not self._autoaccel.own_scheduler:
            # made already: under DeepSpeed, through HF's copy of this Trainer, or by the
            # scheduler section of its config
            return self.lr_scheduler
        steps = self._autoaccel.run_steps(self.args, num_training_steps)
        scheduler = super().create_scheduler(steps, optimizer)
        own = self._autoaccel.own_scheduler
        tuned = self._autoaccel.schedule(scheduler.optimizer, num_training_steps, own)
        if tuned is not None:
            self.lr_scheduler = scheduler = tuned
        return scheduler

    def get_batch_samples(self, *args: Any, **kwargs: Any) -> Any:
        """The Trainer's fetch of one optimizer step's batches, timed in a trial."""
        observer = self._autoaccel.observer
        if observer is None:
            batches, items = super().get_batch_samples(*args, **kwargs)
            self._check_loss_scaling(batches)
            return batches, items
        observer.fetch_start()
        batches, items = super().get_batch_samples(*args, **kwargs)
        self._check_loss_scaling(batches)
        self._autoaccel.fetched = sum(samples_in(b) for b in batches)
        observer.fetch_end(self._autoaccel.fetched)
        self._autoaccel.losses = []
        return batches, items

    def _check_loss_scaling(self, batches: list[Any]) -> None:
        """Under several processes, once: whether HF would scale a loss the model does not
        take ``num_items_in_batch`` for by the process count, and if so, stop it.

        HF multiplies the loss by the process count when the model's ``forward`` takes
        ``**kwargs`` (``average_tokens_across_devices``, on by default): right for a loss
        that divides by the item count gathered over all processes, but a model that
        averages its own batch (``BertForSequenceClassification``, say) then trains on a
        loss and gradients 2x over 2 processes, and ``eval_loss`` reads 2x
        (transformers#35078). A tuner compared such a candidate's losses with your one
        process's. Checked on the first batch: the model's loss with and without a
        different item count, in eval mode; where they agree, HF's own switch
        (``model_accepts_loss_kwargs``) is turned off, and a note says so."""
        if not self._autoaccel.loss_scaling_unchecked(self):
            return
        self._autoaccel.loss_checked = True
        batch = batches[0] if batches else None
        if not isinstance(batch, dict) or "labels" not in batch:
            return  # HF counts no items without labels: nothing is scaled
        model = self.accelerator.unwrap_model(self.model)
        inputs = self._prepare_inputs(dict(batch))
        items = int(inputs["labels"].ne(-100).sum())
        was_training = model.training
        with preserved_process_state(rng=True), torch.no_grad():
            model.eval()
            try:
                plain = loss_of(model(**inputs))
                counted = loss_of(model(**inputs, num_items_in_batch=2 * max(items, 1)))
            finally:
                model.train(was_training)
        if plain is None or counted is None or not torch.allclose(plain, counted):
            return  # the model divides by the count: HF's scaling is right for it
        self.model_accepts_loss_kwargs = False
        if rank() == 0:
            print(
                f"autoaccel: {type(model).__name__} ignores num_items_in_batch, so HF would "
                f"scale its loss by the {world_size()} processes (its eval_loss too; "
                "transformers#35078): model_accepts_loss_kwargs is off",
                file=sys.stderr,
            )

    def training_step(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """One micro-batch; a trial keeps its loss."""
        loss: torch.Tensor = super().training_step(*args, **kwargs)
        if self._autoaccel.observer is not None:
            self._autoaccel.losses.append(loss.detach())
        return loss
