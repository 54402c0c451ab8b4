"""``autoaccel.hf.Trainer``: a Hugging Face Trainer script tuned with one changed line.

In-process: a normal run applies a config to the TrainingArguments (and says what it
changed), the LR follows the batch by the config's rule, bad input is one line. As
subprocess trials: the baseline reports your arguments; a trial applies its config, in one
process or two under torchrun.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import Dataset, IterableDataset

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("process_state_kept")

from trials.test_script_trials import SHORT  # noqa: E402

from autoaccel.config import TrainingConfig  # noqa: E402
from autoaccel.errors import UsageError  # noqa: E402
from autoaccel.hf import Trainer  # noqa: E402
from autoaccel.trials.script import ScriptRunner  # noqa: E402


class Tokens(Dataset[dict[str, torch.Tensor]]):
    def __init__(self, n: int = 256) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(2, 32, (n, 16), generator=g)
        self.labels = (self.ids == 7).any(1).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def tiny_model() -> Any:
    transformers.set_seed(0)
    config = transformers.BertConfig(
        vocab_size=32,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    return transformers.BertForSequenceClassification(config)


def arguments(out: Path, **more: Any) -> Any:
    return transformers.TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        **more,
    )


class Seen(transformers.TrainerCallback):
    """What each optimizer step trained with."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.threads: list[int] = []

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.lrs.append(kwargs["optimizer"].param_groups[0]["lr"])
        self.threads.append(torch.get_num_threads())


def test_the_import_line_is_all_that_changes() -> None:
    """``from autoaccel.hf import Trainer, TrainingArguments``: the arguments are HF's own."""
    from autoaccel.hf import TrainingArguments

    assert TrainingArguments is transformers.TrainingArguments
    assert issubclass(Trainer, transformers.Trainer)


def test_a_normal_run_applies_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = TrainingConfig(
        batch_size=16,
        grad_accum_steps=2,
        precision="bf16-mixed",
        num_threads=1,
        device="cpu",
        lr=3e-3,
        warmup_steps=2,
        schedule="cosine",
        schedule_steps=4,
    )
    model, seen = tiny_model(), Seen()
    batches: list[int] = []
    model.register_forward_pre_hook(
        lambda _m, _a, kw: batches.append(len(kw["input_ids"])), with_kwargs=True
    )
    trainer = Trainer(
        autoaccel_config=config,
        model=model,
        args=arguments(tmp_path, max_steps=4),
        train_dataset=Tokens(),
        callbacks=[seen],
    )
    used = trainer.args
    assert (used.per_device_train_batch_size, used.gradient_accumulation_steps) == (16, 2)
    assert used.bf16 and not used.fp16 and used.learning_rate == 3e-3
    assert (str(used.lr_scheduler_type), used.warmup_steps) == ("SchedulerType.COSINE", 2)
    trainer.train()
    assert batches == [16] * 8 and seen.threads == [1] * 4  # 4 steps x 2 micro-batches
    # HF's warm-up starts at 0 (one step behind prepare()'s), then its cosine over the run
    assert seen.lrs == pytest.approx([0.0, 1.5e-3, 3e-3, 1.5e-3])
    err = capsys.readouterr().err
    assert "applied from the config: per_device_train_batch_size 8 -> 16" in err
    assert "bf16 False -> True" in err


def test_the_lr_follows_the_batch_by_the_configs_rule(tmp_path: Path) -> None:
    config = TrainingConfig(batch_size=32, lr_scaling="linear", device="cpu")
    trainer = Trainer(
        autoaccel_config=config,
        model=tiny_model(),
        args=arguments(tmp_path),
        train_dataset=Tokens(),
    )
    assert trainer.args.learning_rate == pytest.approx(4e-3)  # 8 -> 32: x4


def test_no_config_keeps_your_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", [str(tmp_path / "train.py")])
    given = arguments(tmp_path)
    trainer = Trainer(model=tiny_model(), args=given, train_dataset=Tokens())
    assert trainer.args is given
    assert "no autoaccel.yaml found" in capsys.readouterr().err


class Stream(IterableDataset[dict[str, torch.Tensor]]):
    def __iter__(self) -> Any:
        return iter(())


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"positional": True}, "takes its arguments by name"),
        ({"args": None}, "needs args=TrainingArguments"),
        ({"train_dataset": Stream()}, "needs a train_dataset with a len()"),
        (
            {"autoaccel_config": TrainingConfig(strategy="fsdp", processes=2, device="cpu")},
            "this config trains FSDP",
        ),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, kwargs: dict[str, Any], words: str) -> None:
    given: dict[str, Any] = {
        "model": tiny_model(),
        "args": arguments(tmp_path),
        "train_dataset": Tokens(),
    }
    positional = kwargs.pop("positional", False)
    given |= kwargs
    with pytest.raises(UsageError) as raised:
        Trainer(given["model"], **given) if positional else Trainer(**given)
    assert words in str(raised.value) and "\n" not in str(raised.value)


# --- trials: the script as `autoaccel tune` runs it -------------------------------------

SCRIPT = """
import os, sys
os.chdir(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_hf import Tokens, arguments, tiny_model
import autoaccel.hf

# num_train_epochs=1 is 32 steps: a trial trains until it is measured all the same
args = arguments(Path("out"), num_train_epochs=1)
autoaccel.hf.Trainer(model=tiny_model(), args=args, train_dataset=Tokens()).train()
"""


def _runner(tmp_path: Path) -> ScriptRunner:
    path = tmp_path / "train.py"
    path.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    return ScriptRunner(path, (), trials_dir=tmp_path / "trials", settings=SHORT, timeout_s=120)


def test_a_baseline_trial_reports_your_arguments(tmp_path: Path) -> None:
    trial = _runner(tmp_path).run(None)
    assert trial.measurement.ok, trial.log_tail()
    report = trial.report
    assert report is not None and report.user_config["batch_size"] == 8
    assert report.user_config["precision"] == "32-true" and report.dataset_size == 256
    assert report.optimizer == "AdamW" and report.optimizer_lr == 1e-3
    assert report.fixed is not None and "batch_fetch" in report.fixed
    assert trial.measurement.samples == 8 * trial.measurement.window_steps
    assert trial.measurement.loss_samples


def test_a_trial_applies_its_config_in_two_processes_under_torchrun(tmp_path: Path) -> None:
    """The batch size, threads and process count of a trial's config (the precision and
    the rest are applied as in a normal run, tested in-process above)."""
    two = TrainingConfig(batch_size=8, processes=2, strategy="ddp", num_threads=1, device="cpu")
    trial = _runner(tmp_path).run(two)
    assert trial.measurement.ok, trial.log_tail()
    assert trial.report is not None and trial.report.world_size == 2
    assert trial.measurement.samples == 2 * 8 * trial.measurement.window_steps
    assert not list((tmp_path / "out").glob("checkpoint-*"))
