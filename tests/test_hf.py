"""``autoaccel.hf.Trainer``: a Hugging Face Trainer script tuned with one changed line.

In-process: a normal run applies a config to the TrainingArguments (and says what it
changed), the tuned schedule and momentum, the LR follows the batch by the config's rule,
bad input is one line. As subprocess trials: the baseline reports your arguments and the
held-out loss of the Trainer's own evaluate(); a loss-curve run scores with it; a trial
applies its config in two processes under torchrun.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import Dataset, IterableDataset

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("process_state_kept")

from test_export_runs import free_port  # noqa: E402
from trials.test_script_trials import PAST_YOURS, SHORT  # noqa: E402

from autoaccel.config import TrainingConfig, save_config  # noqa: E402
from autoaccel.errors import UsageError  # noqa: E402
from autoaccel.frontends.script import check_hook  # noqa: E402
from autoaccel.hf import Trainer  # noqa: E402
from autoaccel.pipeline import PipelineOptions  # noqa: E402
from autoaccel.schedule import lr_factor  # noqa: E402
from autoaccel.scoring import Scoring  # noqa: E402
from autoaccel.states import Objective, Outcome  # noqa: E402
from autoaccel.trials.script import ScriptRunner  # noqa: E402
from autoaccel.trials.script_curves import ScriptTrainer, sweep_script  # noqa: E402


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
        disable_tqdm=True,  # no use_cpu: a bf16 config on the CPU must set it itself
        **more,
    )


class Seen(transformers.TrainerCallback):
    """What each optimizer step trained with."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.beta1: list[float] = []
        self.threads: list[int] = []

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        group = kwargs["optimizer"].param_groups[0]
        self.lrs.append(group["lr"])
        self.beta1.append(group["betas"][0])
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
        momentum=0.8,
        warmup_steps=2,
        schedule="one-cycle",
        schedule_steps=100,  # tuned over 100 steps; this run has 4
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
    trainer.train()
    assert batches == [16] * 8 and seen.threads == [1] * 4  # 4 steps x 2 micro-batches
    # prepare()'s own schedule (one-cycle: HF has none), stretched over this run's 4 steps
    factor = lr_factor(TrainingConfig(warmup_steps=2, schedule="one-cycle", schedule_steps=4))
    assert seen.lrs == pytest.approx([3e-3 * factor(step) for step in range(4)])
    assert seen.beta1 == [0.8] * 4  # AdamW's beta1: the tuned momentum
    err = capsys.readouterr().err
    assert "applied from the config: per_device_train_batch_size 8 -> 16" in err
    assert "bf16 False -> True" in err
    assert (
        "the tuned one-cycle schedule (2 warm-up steps) over the run's 4 optimizer steps, "
        "in place of lr_scheduler_type linear" in err
    )
    assert "beta1 0.9 -> 0.8" in err


def test_a_scheduler_you_pass_wins_over_the_tuned_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = TrainingConfig(lr=3e-3, warmup_steps=2, schedule="cosine", schedule_steps=4)
    model, seen = tiny_model(), Seen()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    trainer = Trainer(
        autoaccel_config=config,
        model=model,
        args=arguments(tmp_path, max_steps=2),
        train_dataset=Tokens(),
        optimizers=(optimizer, scheduler),
        callbacks=[seen],
    )
    trainer.train()
    # the config's lr reaches your optimizer (learning_rate would not), your halving stays
    assert seen.lrs == pytest.approx([1.5e-3, 1.5e-3])
    err = capsys.readouterr().err
    assert "your lr_scheduler wins over the tuned cosine schedule" in err
    assert "lr 0.001 -> 0.003" in err and "learning_rate" not in err


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


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only reading of device: auto")
def test_device_auto_on_a_machine_without_a_gpu_keeps_the_trainer_on_the_cpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``device: auto`` (a hand-written config's default) means a GPU where torch can use
    one, else the CPU: here the CPU, so your ``use_cpu=True`` stays, unsaid (it was turned
    off and said as ``use_cpu True -> False``); and a bf16 config without ``use_cpu`` in
    your arguments trains (HF refused it: "Your setup doesn't support bf16/gpu")."""
    config = TrainingConfig(batch_size=16, device="auto")
    given = arguments(tmp_path, max_steps=1, use_cpu=True)
    trainer = Trainer(
        autoaccel_config=config, model=tiny_model(), args=given, train_dataset=Tokens()
    )
    assert trainer.args.use_cpu is True
    trainer.train()
    err = capsys.readouterr().err
    assert "per_device_train_batch_size 8 -> 16" in err and "use_cpu" not in err
    bf16 = TrainingConfig(precision="bf16-mixed")  # device: auto, the default
    trainer = Trainer(
        autoaccel_config=bf16,
        model=tiny_model(),
        args=arguments(tmp_path, max_steps=1),
        train_dataset=Tokens(),
    )
    assert trainer.args.bf16 and trainer.args.use_cpu
    trainer.train()


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


def test_a_config_of_two_processes_in_one_says_how_to_start_it(tmp_path: Path) -> None:
    """python train.py with a config tuned for 2 processes: the Trainer trains 1 process
    of the tuned per-process batch, half the tuned global batch; it said nothing."""
    config = TrainingConfig(batch_size=8, processes=2, strategy="ddp", device="cpu")
    with pytest.warns(UserWarning, match="start the script with `autoaccel run script.py`"):
        Trainer(
            autoaccel_config=config,
            model=tiny_model(),
            args=arguments(tmp_path),
            train_dataset=Tokens(),
        )


def test_a_launch_at_a_precision_autoaccel_does_not_tune_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp8")  # accelerate launch's way
    with pytest.raises(UsageError) as raised:
        Trainer(model=tiny_model(), args=arguments(tmp_path), train_dataset=Tokens())
    assert "mixed precision 'fp8'" in str(raised.value) and "\n" not in str(raised.value)


LAUNCHED = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_hf import Tokens, arguments, tiny_model
from autoaccel.config import TrainingConfig
from autoaccel.hf import Trainer

config = TrainingConfig(precision="32-true", device="cpu") if sys.argv[1:] == ["config"] else None
trainer = Trainer(
    autoaccel_config=config, model=tiny_model(), args=arguments(Path("out"), max_steps=2),
    train_dataset=Tokens(),
)
if config is not None:
    trainer.train()
user, state = trainer._autoaccel.user, trainer.accelerator.state
print("trains at", trainer.accelerator.mixed_precision, state.dynamo_plugin.backend.value)
print("yours", user.precision, user.compile)
"""

ACCELERATE_CONFIG = """
compute_environment: LOCAL_MACHINE
distributed_type: 'NO'
mixed_precision: bf16
num_machines: 1
num_processes: 1
use_cpu: true
dynamo_config:
  dynamo_backend: INDUCTOR
"""


@pytest.mark.slow
@pytest.mark.parametrize("config", [False, True])
def test_accelerate_launchs_precision_and_compile_are_yours_and_a_config_overrules_them(
    tmp_path: Path, config: bool
) -> None:
    """``accelerate launch`` with a config file that says bf16 and inductor: HF trains so
    where your arguments name neither. Without a config that is your setup (it read
    32-true, no compile); a config's 32-true, no compile is what trains (it trained bf16,
    compiled), and the run says what it overruled."""
    script, launch = tmp_path / "train.py", tmp_path / "accelerate.yaml"
    script.write_text(LAUNCHED.format(tests=str(Path(__file__).parent)))
    launch.write_text(ACCELERATE_CONFIG)
    accelerate = Path(sys.executable).parent / "accelerate"
    command = [str(accelerate), "launch", "--config_file", str(launch), str(script)]
    done = subprocess.run(
        [*command, *(["config"] if config else [])],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    if config:
        assert "trains at no NO" in done.stdout
        assert (
            "ACCELERATE_MIXED_PRECISION bf16 (accelerate launch) -> 32-true, "
            "ACCELERATE_DYNAMO_BACKEND inductor (accelerate launch) -> no compile" in done.stderr
        )
    else:
        assert "trains at bf16 INDUCTOR" in done.stdout
    assert "yours bf16-mixed True" in done.stdout


# --- trials: the script as `autoaccel tune` runs it -------------------------------------

SCRIPT = """
import os, sys
os.chdir(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_hf import Tokens, arguments, tiny_model
import autoaccel.hf

# num_train_epochs=1 is 32 steps: a trial trains until it is measured all the same;
# HF's own evaluation each epoch does not run in a trial (the trial scores when it needs)
args = arguments(Path("out"), num_train_epochs=1, eval_strategy="epoch")
autoaccel.hf.Trainer(
    model=tiny_model(), args=args, train_dataset=Tokens(), eval_dataset=Tokens(64)
).train()
"""


def _runner(tmp_path: Path) -> ScriptRunner:
    path = tmp_path / "train.py"
    path.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    return ScriptRunner(path, (), trials_dir=tmp_path / "trials", settings=SHORT, timeout_s=120)


@pytest.mark.slow
def test_a_baseline_trial_reports_your_arguments_and_evaluate_scores_a_curve(
    tmp_path: Path,
) -> None:
    runner = _runner(tmp_path)
    trial = runner.run(None)
    assert trial.measurement.ok, trial.log_tail()
    report = trial.report
    assert report is not None and report.user_config["batch_size"] == 8
    assert report.user_config["precision"] == "32-true" and report.dataset_size == 256
    assert report.optimizer == "AdamW" and report.optimizer_lr == 1e-3
    assert report.fixed is not None and "batch_fetch" in report.fixed
    assert report.own_samples == 256  # num_train_epochs=1 over 256: time-to-loss's horizon
    assert trial.measurement.samples == 8 * trial.measurement.window_steps
    assert trial.measurement.loss_samples
    # The Trainer's evaluate() is the held-out hook: eval_loss on the untrained model ...
    assert report.has_hook and report.held_out_start is not None
    untrained = report.held_out_start[0]
    assert 0.3 < untrained < 1.5  # a 2-class cross-entropy near log(2)
    # ... and the score of each point of a loss-curve run (time-to-loss's evidence)
    trainer = ScriptTrainer(runner, report, None)
    assert trainer.held_out
    assert trainer.scored_on == f"{runner.script.name}'s Trainer.evaluate()"  # as the tune says
    run = trainer.train_for(TrainingConfig(batch_size=8), seconds=1.0, scoring=Scoring(evals=2))
    assert run.outcome is Outcome.OK, run.message
    assert len(run.curve) == 2 and run.start_loss == untrained
    assert all(0.0 < p.loss < 5.0 and p.step > 0 for p in run.curve)


def test_the_lr_range_test_sets_each_steps_lr_in_the_trainers_optimizer(tmp_path: Path) -> None:
    """`autoaccel lr-find` on a Hugging Face Trainer script: the sweep's LR reaches the Trainer's
    optimizer at every step (up to 1e4 the loss blows up, which the script's own LR never
    does), so the sweep stops there, and the finding suggests an LR below it."""
    sweep = {"min_lr": 1e-4, "max_lr": 1e4, "steps": 40}
    finding, trial = sweep_script(_runner(tmp_path), None, sweep)
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
    assert not list((tmp_path / "out").glob("checkpoint-*"))


@pytest.mark.slow
def test_two_processes_score_the_loss_one_process_would(tmp_path: Path) -> None:
    """HF scales a loss by the process count when the model's forward takes ``**kwargs``,
    though BertForSequenceClassification averages its own batch: over 2 processes its
    training loss and eval_loss read 2x (about 1.39 untrained, where one process reads
    log(2) = 0.69), and a tuner compared them with your one process's. Under autoaccel
    the model is checked and the scaling turned off: both read as one process's."""
    runner = _runner(tmp_path)
    report = runner.run(None).report
    assert report is not None and report.held_out_start is not None
    one = report.held_out_start[0]
    two = TrainingConfig(batch_size=4, processes=2, strategy="ddp", num_threads=1, device="cpu")
    trainer = ScriptTrainer(runner, report, None)
    run = trainer.train_for(two, seconds=0.5, scoring=Scoring(evals=1))
    assert run.outcome is Outcome.OK, run.message
    assert run.curve[0].loss < one + 0.1  # 2x would be about 1.39
    trial = runner.run(two)
    assert trial.measurement.ok, trial.log_tail()
    assert max(trial.measurement.losses) < one + 0.2
    assert "ignores num_items_in_batch" in trial.log_tail()


LRS_SCRIPT = """
import os, sys
os.chdir(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, {tests!r})
from pathlib import Path
import transformers
from test_hf import Tokens, arguments, tiny_model
import autoaccel.hf


class Lrs(transformers.TrainerCallback):
    def on_step_begin(self, args, state, control, optimizer, **kwargs):
        if state.is_world_process_zero:
            with open("lrs.txt", "a") as out:
                out.write(f"{{optimizer.param_groups[0]['lr']}}\\n")


# one epoch of 64 samples: 8 optimizer steps at batch 8, HF's linear decay over them
args = arguments(Path("out"), num_train_epochs=1)
autoaccel.hf.Trainer(
    model=tiny_model(), args=args, train_dataset=Tokens(64), callbacks=[Lrs()]
).train()
"""


@pytest.mark.slow
def test_a_trials_lr_decays_over_your_own_training(tmp_path: Path) -> None:
    """A trial trains until it is measured (max_steps 10**9), and HF's linear decay spanned
    that: your LR was held all the way, so a time-to-loss study or a convergence check
    compared each pick with your setup at its peak LR, never annealed as your own training
    anneals it. HF's scheduler now spans the steps your arguments train at the trial's
    batch and process count (64 samples: 8 steps of 8, 4 of 16, 4 of 2 processes x 8),
    and the LR is 0 after them (your training has ended there)."""
    path = tmp_path / "train.py"
    path.write_text(LRS_SCRIPT.format(tests=str(Path(__file__).parent)))
    runner = ScriptRunner(
        path, (), trials_dir=tmp_path / "trials", settings=PAST_YOURS, timeout_s=120
    )
    lrs_file = tmp_path / "lrs.txt"
    two = TrainingConfig(batch_size=8, processes=2, strategy="ddp", num_threads=1, device="cpu")
    for config, steps in ((None, 8), (TrainingConfig(batch_size=16, device="cpu"), 4), (two, 4)):
        lrs_file.unlink(missing_ok=True)
        trial = runner.run(config)
        assert trial.measurement.ok, trial.log_tail()
        lrs = [float(line) for line in lrs_file.read_text().split()]
        assert len(lrs) > 2 * steps  # the trial trains on past your own training
        assert lrs[0] == pytest.approx(1e-3)
        assert lrs[steps // 2] == pytest.approx(5e-4)  # half way through your epoch
        assert lrs[steps:] == [0.0] * (len(lrs) - steps)


# --- a DeepSpeed config given to TrainingArguments (deepspeed=...) -----------------------

DEEPSPEED_SCRIPT = """
import os, sys
os.chdir(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, {tests!r})
from pathlib import Path
import transformers
from test_hf import Tokens, arguments, tiny_model
import autoaccel.hf

class Seen(transformers.TrainerCallback):
    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        group = optimizer.param_groups[0]
        print("SEEN", group["lr"], group["betas"][0], flush=True)

# the micro-batch, the LR and its schedule are this file's; the accumulation and precision
# are left to HF; the optimizer is HF's (DeepSpeed's own would build its FusedAdam first:
# minutes of C++ on 2 cores)
ds = {{"train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": "auto",
      "scheduler": {{"type": "WarmupLR", "params": {{"warmup_max_lr": 1e-3,
                                                     "warmup_num_steps": "auto"}}}},
      "zero_optimization": {{"stage": 0}}}}
args = arguments(Path("out"), max_steps=4, deepspeed=ds, use_cpu=True)
trainer = autoaccel.hf.Trainer(
    model=tiny_model(), args=args, train_dataset=Tokens(), eval_dataset=Tokens(64),
    callbacks=[Seen()], autoaccel_config={config!r},
)
trainer.train()
print("TRAINED", trainer.args.per_device_train_batch_size, flush=True)
"""


def _deepspeed_script(tmp_path: Path, config: str | None) -> Path:
    pytest.importorskip("deepspeed", reason="DeepSpeed does not install here")
    path = tmp_path / "train.py"
    path.write_text(DEEPSPEED_SCRIPT.format(tests=str(Path(__file__).parent), config=config))
    return path


@pytest.mark.slow
def test_a_deepspeed_configs_own_values_win_over_the_config_and_are_said(tmp_path: Path) -> None:
    """HF refuses TrainingArguments that differ from the DeepSpeed config's own values: a
    config of batch 16 at another LR stopped the run at its start ("DeepSpeed config values
    that mismatch"). Its micro-batch and LR now win, each said in one line; what it leaves
    to HF ("auto": the accumulation; the betas of HF's optimizer) the config sets. Each
    run may first build DeepSpeed's shared-memory op for this venv (a minute or two)."""
    tuned = TrainingConfig(
        batch_size=16,
        grad_accum_steps=2,
        lr=0.01,
        momentum=0.8,
        schedule="cosine",
        warmup_steps=1,
        schedule_steps=4,
        device="cpu",
    )
    config = save_config(tuned, tmp_path / "autoaccel.yaml")
    path = _deepspeed_script(tmp_path, str(config))
    rendezvous = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0",
                  "WORLD_SIZE": "1", "LOCAL_RANK": "0"}  # fmt: skip
    env = {**os.environ, **rendezvous}  # as `deepspeed train.py` starts one process
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "TRAINED 8" in done.stdout  # the micro-batch is the DeepSpeed config's
    assert "gradient_accumulation_steps 1 -> 2" in done.stderr
    assert (
        "autoaccel: your DeepSpeed config's train_micro_batch_size_per_gpu 8 wins over the "
        'config\'s batch_size 16 (set it to "auto" to apply the tuned value)'
    ) in done.stderr
    assert (
        "your DeepSpeed config's scheduler.params.warmup_max_lr 0.001 wins over the config's "
        "lr 0.01"
    ) in done.stderr
    assert "your DeepSpeed config's scheduler WarmupLR wins over the tuned cosine schedule" in (
        done.stderr
    )
    seen = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("SEEN")]
    assert seen and {float(beta1) for _, beta1 in seen} == {0.8}  # "auto": the config's
    assert max(float(lr) for lr, _ in seen) <= 1e-3  # DeepSpeed's warm-up to its own LR


@pytest.mark.slow
def test_a_trial_of_a_deepspeed_script_runs_and_searches_none_of_its_values(
    tmp_path: Path,
) -> None:
    """A trial of one process runs as ``python train.py``, where DeepSpeed looked for MPI
    and the baseline failed; it is now told it is the whole group, as its launcher would.
    The knobs the DeepSpeed config sets are reported as the script's (not searched), and
    a tune that would set the LR (time-to-loss, the LR range test) is refused."""
    runner = ScriptRunner(
        _deepspeed_script(tmp_path, None), (), trials_dir=tmp_path / "trials", settings=SHORT,
        timeout_s=600,
    )  # fmt: skip
    trial = runner.run(None)
    assert trial.measurement.ok, trial.log_tail()
    report = trial.report
    assert report is not None and report.user_config["batch_size"] == 8
    fixed = report.fixed or {}
    assert fixed["batch_size"] == (
        'your DeepSpeed config sets it (train_micro_batch_size_per_gpu 8; "auto" lets '
        "autoaccel tune it)"
    )
    assert "scheduler.params.warmup_max_lr 0.001" in fixed["lr"] and "batch_fetch" in fixed
    assert "scheduler WarmupLR" in fixed["schedule"]
    assert "grad_accum_steps" not in fixed and "precision" not in fixed  # "auto", left out
    with pytest.raises(UsageError, match=r"^--objective time-to-loss sets the LR at each step"):
        check_hook(
            report,
            PipelineOptions(objective=Objective.TIME_TO_LOSS),
            runner.script,
        )
