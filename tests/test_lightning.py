"""``autoaccel.lightning.Trainer``: a Lightning script tuned with one changed line.

In-process: a normal run applies a config (Trainer arguments, loader, batch size attribute,
threads, memory format, LR schedule), your explicit arguments win, bad input is one line.
As subprocess trials: the baseline reports your settings and what your arguments pin; your
validation_step over your validation loader is the held-out score (at the baseline and in
a loss-curve run); a trial applies its config in two processes under torchrun.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

L = pytest.importorskip("lightning")
pytestmark = pytest.mark.usefixtures("process_state_kept")

from trials.test_script_trials import PAST_YOURS, SHORT  # noqa: E402

from autoaccel.config import TrainingConfig  # noqa: E402
from autoaccel.errors import UsageError  # noqa: E402
from autoaccel.lightning import Trainer  # noqa: E402
from autoaccel.measure import MeterSettings  # noqa: E402
from autoaccel.schedule import lr_factor  # noqa: E402
from autoaccel.trials.script import ScriptRunner  # noqa: E402
from autoaccel.trials.script_curves import sweep_script  # noqa: E402

QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False}
QUIET |= {"enable_checkpointing": False}


class Net(L.LightningModule):
    """A tiny conv net that records what each training step saw."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 2)
        self.seen: list[dict[str, Any]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean((2, 3)))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        self.seen.append(
            {
                "batch": len(x),
                "channels_last": x.is_contiguous(memory_format=torch.channels_last),
                "lr": self.trainer.optimizers[0].param_groups[0]["lr"],
                "autocast": torch.is_autocast_enabled("cpu"),
                "threads": torch.get_num_threads(),
            }
        )
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


class Data(L.LightningDataModule):
    def __init__(self, batch_size: int = 16, loader_batch: int | None = -1) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.loader_batch = loader_batch

    def train_dataloader(self) -> DataLoader[Any]:
        g = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.randn(512, 3, 8, 8, generator=g), torch.randint(0, 2, (512,)))
        batch = self.batch_size if self.loader_batch == -1 else self.loader_batch
        return DataLoader(data, batch_size=batch, shuffle=True)


def held_out() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(96, 3, 8, 8, generator=g), torch.randint(0, 2, (96,), generator=g)


class Judged(Net):
    """Net with a validation_step that logs its loss and accuracy, as people write it."""

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_accuracy", (logits.argmax(1) == y).float().mean())


class Unnamed(Net):
    """A validation_step that logs no loss."""

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_accuracy", (self(x).argmax(1) == y).float().mean())


class Scheduled(Net):
    """Net whose LR a scheduler sets at every step, as configure_optimizers often does."""

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": decay, "interval": "step"}}


class LrLogged(Net):
    """Net that appends each step's LR to lrs.txt (a trial runs in a process of its own)."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        with open("lrs.txt", "a") as out:
            out.write(f"{self.trainer.optimizers[0].param_groups[0]['lr']}\n")
        return super().training_step(batch, batch_idx)


class OneCycled(LrLogged):
    """Lightning's own recipe: OneCycleLR over ``estimated_stepping_batches``."""

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        steps = self.trainer.estimated_stepping_batches
        cycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cycle, "interval": "step"}}


class Cosine(LrLogged):
    """A cosine over ``self.trainer.max_epochs`` (stepped per epoch); the max_epochs it was
    sized by written to epochs.txt."""

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        epochs = self.trainer.max_epochs
        with open("epochs.txt", "w") as out:
            out.write(str(epochs))
        return [optimizer], [torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)]


class Linear(LrLogged):
    """A linear decay to 0 over ``self.trainer.max_steps`` (stepped per step), as
    ``transformers.get_linear_schedule_with_warmup`` makes it; the max_steps it was sized by
    written to steps.txt."""

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        steps = self.trainer.max_steps
        with open("steps.txt", "w") as out:
            out.write(str(steps))
        decay = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: max(0.0, (steps - step) / max(1, steps))
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": decay, "interval": "step"}}


class Few(Data):
    """64 samples: 4 steps of 16 an epoch."""

    def train_dataloader(self) -> DataLoader[Any]:
        g = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.randn(64, 3, 8, 8, generator=g), torch.randint(0, 2, (64,)))
        return DataLoader(data, batch_size=self.batch_size, shuffle=True)


class HeldOutData(Data):
    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(TensorDataset(*held_out()), batch_size=40)  # 40, 40, 16


def test_the_module_is_lightning_with_its_trainer_replaced() -> None:
    """``import autoaccel.lightning as L`` is the one line a script changes."""
    import autoaccel.lightning as AL

    assert AL.Trainer is Trainer and issubclass(Trainer, L.Trainer)
    assert AL.LightningModule is L.LightningModule and AL.seed_everything is L.seed_everything


def test_a_normal_run_applies_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    """Precision, accumulation, batch size (loader and the datamodule's attribute), threads,
    channels_last, and the tuned schedule stepped once per optimizer step."""
    config = TrainingConfig(
        batch_size=32,
        grad_accum_steps=2,
        precision="bf16-mixed",
        num_threads=1,
        channels_last=True,
        device="cpu",
        lr=0.2,
        warmup_steps=2,
        schedule="cosine",
        schedule_steps=4,
    )
    net, data = Net(), Data(batch_size=16)
    trainer = Trainer(autoaccel_config=config, max_steps=4, **QUIET)
    trainer.fit(net, datamodule=data)
    assert trainer.precision == "bf16-mixed" and trainer.accumulate_grad_batches == 2
    assert data.batch_size == 32 and trainer.train_dataloader.batch_size == 32
    assert {s["batch"] for s in net.seen} == {32} and len(net.seen) == 8  # 4 steps x 2
    assert all(s["channels_last"] and s["autocast"] and s["threads"] == 1 for s in net.seen)
    assert net.conv.weight.is_contiguous(memory_format=torch.channels_last)
    # The LR each micro-batch trained at: the config's, warmed up then cosine, at the
    # optimizer step the micro-batch is in.
    factor = lr_factor(config)
    expected = [0.2 * factor(step) for step in range(4) for _ in range(2)]
    assert [s["lr"] for s in net.seen] == pytest.approx(expected, rel=1e-6)
    assert "wins over" not in capsys.readouterr().err


def test_a_loader_passed_to_fit_is_rebuilt_too() -> None:
    net = Net()
    loader = Data(batch_size=8).train_dataloader()
    trainer = Trainer(
        autoaccel_config=TrainingConfig(batch_size=64, device="cpu"), max_steps=2, **QUIET
    )
    trainer.fit(net, train_dataloaders=loader)
    assert {s["batch"] for s in net.seen} == {64}


def test_your_explicit_arguments_win_and_are_said(capsys: pytest.CaptureFixture[str]) -> None:
    config = TrainingConfig(precision="bf16-mixed", grad_accum_steps=2, device="cpu")
    trainer = Trainer(autoaccel_config=config, precision="32", max_steps=2, **QUIET)
    trainer.fit(Net(), datamodule=Data())
    assert trainer.precision == "32-true" and trainer.accumulate_grad_batches == 2
    err = capsys.readouterr().err
    assert "Trainer(precision='32') wins over the config's 'bf16-mixed'" in err
    assert "accumulate" not in err  # not given: the config's applies, nothing to say


def test_no_config_leaves_the_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", [str(tmp_path / "train.py")])
    net = Net()
    trainer = Trainer(max_steps=2, **QUIET)
    trainer.fit(net, datamodule=Data(batch_size=16))
    assert trainer.precision == "32-true" and {s["batch"] for s in net.seen} == {16}
    assert [s["lr"] for s in net.seen] == [0.1, 0.1]
    assert "no autoaccel.yaml found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: Trainer(precision="64-true"), "Trainer(precision='64-true') is not a precision"),
        (lambda: Trainer("cpu"), "takes its arguments by name"),
        (
            lambda: Trainer(
                autoaccel_config=TrainingConfig(strategy="fsdp", processes=2, device="cpu")
            ),
            "trains FSDP on the CPU, which Lightning cannot",
        ),
    ],
)
def test_bad_arguments_are_one_line(make: Any, words: str) -> None:
    with pytest.raises(UsageError) as raised:
        make()
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_a_loader_without_a_batch_size_is_one_line() -> None:
    trainer = Trainer(autoaccel_config=TrainingConfig(device="cpu"), max_steps=1, **QUIET)
    with pytest.raises(UsageError, match="batch_size=None") as raised:
        trainer.fit(Net(), datamodule=Data(loader_batch=None))
    assert "\n" not in str(raised.value)


# --- trials: the script as `autoaccel tune` runs it -------------------------------------


SCRIPT = """
import os, sys
os.chdir(os.path.dirname(os.path.abspath(__file__)))  # where Lightning would log
sys.path.insert(0, {tests!r})
import torch
from test_lightning import {module}, {data}
import autoaccel.lightning

# max_epochs=1 is 32 steps: a trial trains until it is measured all the same; it logs
# and checkpoints nothing
torch.manual_seed(0)
trainer = autoaccel.lightning.Trainer(max_epochs=1, {extra}enable_progress_bar=False)
trainer.fit({module}(), datamodule={data}())
"""


def _runner(
    tmp_path: Path,
    extra: str = "",
    module: str = "Net",
    data: str = "Data",
    settings: MeterSettings = SHORT,
) -> ScriptRunner:
    path = tmp_path / "train.py"
    tests = str(Path(__file__).parent)
    path.write_text(SCRIPT.format(tests=tests, extra=extra, module=module, data=data))
    return ScriptRunner(path, (), trials_dir=tmp_path / "trials", settings=settings, timeout_s=120)


def test_a_baseline_trial_reports_your_settings_and_what_you_pinned(tmp_path: Path) -> None:
    trial = _runner(tmp_path, extra="precision='32', ").run(None)
    assert trial.measurement.ok, trial.log_tail()
    report = trial.report
    assert report is not None and report.user_config["batch_size"] == 16
    assert report.user_config["precision"] == "32-true" and report.dataset_size == 512
    assert report.conv_model and not report.tensor_data  # no batch_fetch through Lightning
    assert report.fixed is not None and "Trainer(precision='32')" in report.fixed["precision"]
    assert "compile" in report.fixed
    assert trial.measurement.window_steps >= 3 and trial.measurement.loss_samples
    assert report.own_samples == 512  # max_epochs=1 over 512 samples: time-to-loss's horizon


def test_max_steps_is_your_own_training(tmp_path: Path) -> None:
    """A trial trains until it is measured, whatever your max_steps; the report still says
    what your own training takes: max_steps optimizer steps of your batch."""
    trial = _runner(tmp_path, extra="max_steps=5, ").run(None)
    assert trial.measurement.ok, trial.log_tail()
    assert trial.report is not None and trial.report.own_samples == 5 * 16
    assert trial.measurement.window_steps > 5


@pytest.mark.slow
def test_validation_step_is_the_held_out_score(tmp_path: Path) -> None:
    """--objective time-to-loss with no hook of the script's own: what validation_step
    logs over the validation loader, batch-weighted, on the untrained model inside fit()
    (the baseline's check; a loss-curve run calls the same hook at its points, as the HF
    test runs one)."""
    runner = _runner(tmp_path, module="Judged", data="HeldOutData")
    trial = runner.run(None, metric="accuracy")  # found as val_accuracy
    assert trial.measurement.ok, trial.log_tail()
    report = trial.report
    assert report is not None and report.has_hook and not report.hook_error
    assert report.hook_name == "validation_step"  # what the tune's lines call it
    torch.manual_seed(0)
    x, y = held_out()
    with torch.no_grad():
        logits = Judged()(x)  # the script's untrained model: the same seed, the same weights
    loss = nn.functional.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(1) == y).float().mean().item()
    assert report.held_out_start == pytest.approx([loss, accuracy], rel=1e-5)
    # A validation_step that logs no loss: one line at the baseline, naming what it logged
    (tmp_path / "unnamed").mkdir()
    unnamed = _runner(tmp_path / "unnamed", module="Unnamed", data="HeldOutData").run(None)
    assert unnamed.report is not None and unnamed.report.hook_error is not None
    assert (
        "validation_step logged val_accuracy: autoaccel scores the held-out loss logged "
        "as val_loss" in unnamed.report.hook_error
    )


@pytest.mark.parametrize("module", ["Net", "Scheduled"])
def test_the_lr_range_test_sets_each_steps_lr_in_the_trainers_optimizer(
    tmp_path: Path, module: str
) -> None:
    """`autoaccel lr-find` on a Lightning script: the sweep's LR reaches the Trainer's
    optimizer at every step (up to 1e4 the loss blows up, which the script's own LR never
    does), so the sweep stops there, and the finding suggests an LR below it. A scheduler
    of the module's own does not set the LR during the sweep."""
    sweep = {"min_lr": 1e-4, "max_lr": 1e4, "steps": 40}
    finding, trial = sweep_script(_runner(tmp_path, module=module), None, sweep)
    assert finding is not None, trial.log_tail()
    assert "diverged" in finding.reason and len(finding.lrs) < 40
    assert finding.lrs == tuple(sorted(finding.lrs)) and finding.lrs[0] == pytest.approx(1e-4)
    assert finding.suggestion is None or finding.suggestion < finding.lrs[-1]


@pytest.mark.slow
def test_a_trial_applies_its_config_in_two_processes_under_torchrun(tmp_path: Path) -> None:
    """The batch size, threads and process count of a trial's config (the precision and
    the rest are applied as in a normal run, tested in-process above)."""
    two = TrainingConfig(batch_size=8, processes=2, strategy="ddp", num_threads=1, device="cpu")
    trial = _runner(tmp_path).run(two)
    assert trial.measurement.ok, trial.log_tail()
    assert trial.report is not None and trial.report.world_size == 2
    assert trial.measurement.samples == 2 * 8 * trial.measurement.window_steps
    assert not (tmp_path / "lightning_logs").exists() and not list(tmp_path.glob("*.ckpt"))


def test_a_one_cycle_over_your_stepping_batches_spans_your_training_in_a_trial(
    tmp_path: Path,
) -> None:
    """A trial trains until it is measured (max_epochs -1), so Lightning's
    estimated_stepping_batches read infinity and OneCycleLR, sized by it as Lightning's docs
    show, raised: every trial of such a script failed. In a trial it is your own
    training's (max_steps=8 of the epoch's 32), the cycle spans those 8 steps, and after
    them the LR is held at your last step's (OneCycleLR raises when stepped past)."""
    trial = _runner(tmp_path, extra="max_steps=8, ", module="OneCycled", settings=PAST_YOURS).run(
        None
    )
    assert trial.measurement.ok, trial.log_tail()
    lrs = [float(line) for line in (tmp_path / "lrs.txt").read_text().split()]
    assert len(lrs) > 12, "the trial trains past your own 8 steps"
    assert lrs.index(max(lrs)) == 2 and max(lrs) > 0.09  # the peak, 30% in
    assert lrs[7] < 1e-5 and lrs[7:] == [lrs[7]] * (len(lrs) - 7)  # your last step's


def test_max_epochs_is_yours_where_a_module_sizes_a_schedule_by_it_in_a_trial(
    tmp_path: Path,
) -> None:
    """A trial trains until it is measured (max_epochs -1): a CosineAnnealingLR sized by
    ``self.trainer.max_epochs`` read -1 and climbed back to the peak LR every other epoch.
    It reads your max_epochs (1), the trial still trains past your epoch (4 steps), and
    there the LR stays at your last step's (a cosine stepped past its T_max climbs back)."""
    trial = _runner(tmp_path, module="Cosine", data="Few", settings=PAST_YOURS).run(None)
    assert trial.measurement.ok, trial.log_tail()
    assert (tmp_path / "epochs.txt").read_text() == "1"
    lrs = [float(line) for line in (tmp_path / "lrs.txt").read_text().split()]
    assert len(lrs) > 12, "the trial trains past your own epoch"
    assert lrs == [0.1] * len(lrs)  # your one epoch's LR, held


def test_max_steps_is_yours_where_a_module_sizes_a_schedule_by_it_in_a_trial(
    tmp_path: Path,
) -> None:
    """A trial trains until it is measured (max_steps -1): a linear decay sized by
    ``self.trainer.max_steps`` read -1 and trained at LR 0 from the first step. It reads
    your max_steps (8), decays over them, and the trial trains on at your last step's LR."""
    trial = _runner(tmp_path, extra="max_steps=8, ", module="Linear", settings=PAST_YOURS).run(None)
    assert trial.measurement.ok, trial.log_tail()
    assert (tmp_path / "steps.txt").read_text() == "8"
    lrs = [float(line) for line in (tmp_path / "lrs.txt").read_text().split()]
    assert len(lrs) > 12, "the trial trains past your own 8 steps"
    assert lrs[:8] == pytest.approx([0.1 * (8 - i) / 8 for i in range(8)])
    assert lrs[8:] == [lrs[7]] * (len(lrs) - 8)  # held at your last step's
