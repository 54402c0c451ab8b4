from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from models import Pairs, mlp, tabular

import autoaccel
from autoaccel.config import CONFIG_ENV, Provenance, TrainingConfig, find_config, save_config
from autoaccel.errors import ConfigError, UsageError
from autoaccel.runtime.prepare import check_processes, tuned_schedule
from autoaccel.runtime.run import shard
from autoaccel.trials.protocol import TrialSpec


def make(lr: float = 0.1) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = mlp()
    return model, torch.optim.SGD(model.parameters(), lr=lr)


def test_without_a_config_nothing_changes_and_one_hint(capsys: pytest.CaptureFixture[str]) -> None:
    model, optimizer = make()
    threads = torch.get_num_threads()
    run = autoaccel.prepare(model, optimizer, tabular(), loader_kwargs={"batch_size": 24})
    assert run.batch_size == 24 and run.config.precision == "32-true"
    assert torch.get_num_threads() == threads
    x, _ = next(iter(run.loader))
    assert len(x) == 24
    assert run.model is model and optimizer.param_groups[0]["lr"] == 0.1
    err = capsys.readouterr().err
    assert err.count("autoaccel tune train.py") == 1


def test_autoaccel_yaml_in_the_working_directory_is_applied() -> None:
    save_config(
        TrainingConfig(batch_size=64, num_threads=1, precision="bf16-mixed"), "autoaccel.yaml"
    )
    model, optimizer = make()
    run = autoaccel.prepare(model, optimizer, tabular())
    assert run.batch_size == 64 and torch.get_num_threads() == 1
    x, _ = next(iter(run.loader))
    with run.autocast():
        assert run.model(x).dtype == torch.bfloat16


def test_config_beside_the_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    save_config(TrainingConfig(batch_size=48), folder / "autoaccel.yaml")
    monkeypatch.setattr("sys.argv", [str(folder / "train.py")])
    assert find_config(script=folder / "train.py") == folder / "autoaccel.yaml"
    model, optimizer = make()
    assert autoaccel.prepare(model, optimizer, tabular()).batch_size == 48


def test_the_environment_variable_and_config_argument_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_config(TrainingConfig(batch_size=64), "autoaccel.yaml")
    other = save_config(TrainingConfig(batch_size=128), tmp_path / "other.yaml")
    monkeypatch.setenv(CONFIG_ENV, str(other))
    model, optimizer = make()
    assert autoaccel.prepare(model, optimizer, tabular()).batch_size == 128
    run = autoaccel.prepare(model, optimizer, tabular(), config=TrainingConfig(batch_size=8))
    assert run.batch_size == 8
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "gone.yaml"))
    with pytest.raises(
        ConfigError,
        match=r"\$AUTOACCEL_CONFIG names .*gone\.yaml, which does "
        r"not exist",
    ):
        autoaccel.prepare(model, optimizer, tabular())


def test_other_hardware_warns() -> None:
    save_config(
        TrainingConfig(provenance=Provenance(hardware_fingerprint="0" * 16, hardware="a DGX")),
        "autoaccel.yaml",
    )
    model, optimizer = make()
    with pytest.warns(UserWarning, match=r"measured on other hardware \(a DGX"):
        autoaccel.prepare(model, optimizer, tabular())


def test_an_invalid_config_file_is_refused() -> None:
    Path("autoaccel.yaml").write_text("batch_size: 0\n")
    model, optimizer = make()
    with pytest.raises(ConfigError, match=r"autoaccel\.yaml: batch_size: must be >= 1"):
        autoaccel.prepare(model, optimizer, tabular())


def test_scripts_that_batch_by_themselves() -> None:
    model, optimizer = make()
    run = autoaccel.prepare(model, optimizer, batch_size=16)
    assert run.batch_size == 16 and run.grad_accum_steps == 1
    run = autoaccel.prepare(
        model, optimizer, batch_size=16, config=TrainingConfig(batch_size=256, grad_accum_steps=2)
    )
    assert (run.batch_size, run.grad_accum_steps) == (256, 2)


def test_tuned_schedule_and_lr_are_built(capsys: pytest.CaptureFixture[str]) -> None:
    model = mlp()
    optimizer = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 0.1},
            {"params": model[2].parameters(), "lr": 0.01},
        ]
    )
    config = TrainingConfig(lr=0.2, warmup_steps=2, schedule="cosine", schedule_steps=10)
    run = autoaccel.prepare(model, optimizer, tabular(), config=config)
    assert run.scheduler is not None
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert lrs == pytest.approx([0.2 * 0.5, 0.02 * 0.5])  # scaled groups, warm-up step 1 of 2
    assert "others were scaled by the same 2x" in capsys.readouterr().err


def test_a_user_scheduler_wins_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    model, optimizer = make()
    mine = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5)
    config = TrainingConfig(schedule="linear", schedule_steps=100)
    run = autoaccel.prepare(model, optimizer, tabular(), scheduler=mine, config=config)
    assert run.scheduler is mine
    assert "your own scheduler is used" in capsys.readouterr().err


def test_a_dataset_with_loader_kwargs_keeps_them() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = autoaccel.prepare(
        model, optimizer, Pairs(20), loader_kwargs={"batch_size": 8, "drop_last": True}
    )
    assert [len(x) for x, _ in run.loader] == [8, 8]


def test_a_node_of_a_multi_node_run_counts_its_own_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """autoaccel run --nnodes 2 with a config of 2 processes: 4 in the world, 2 here."""
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_processes(TrainingConfig(processes=2, strategy="ddp"), 4, in_trial=False)


def test_a_run_of_more_processes_than_tuned_says_the_global_batch_is_not_the_tuned_one() -> None:
    """Launched in 2 processes (accelerate launch, torchrun) with a config of 1: each
    process takes the tuned batch, so the global batch is twice the tuned one."""
    config = TrainingConfig(batch_size=32)
    with pytest.warns(UserWarning, match=r"tuned for 1 process\(es\) and this run has 2"):
        check_processes(config, 2, in_trial=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_processes(config, 1, in_trial=False)
        check_processes(config, 2, in_trial=True)  # the tuner's own processes


def test_an_fsdp_config_loads_and_sharding_a_stepped_optimizer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fsdp.yaml"
    path.write_text("strategy: fsdp\nprocesses: 2\n")
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters())
    with pytest.warns(UserWarning, match="start the script with `autoaccel run script.py`"):
        run = autoaccel.prepare(model, optimizer, tabular(), config=path)
    assert run.model is model and not run.sharded  # one process: nothing to shard over
    for x, y in run.loader:  # a stepped optimizer holds whole-parameter state
        run.backward(torch.nn.functional.cross_entropy(model(x), y))
        run.step()
        break
    with pytest.raises(ConfigError, match="call prepare\\(\\) before the first optimizer step"):
        shard(model, optimizer)


def test_lr_follows_a_larger_batch_by_the_configs_rule(capsys: pytest.CaptureFixture[str]) -> None:
    model, optimizer = make(lr=0.1)
    config = TrainingConfig(batch_size=128, lr_scaling="linear")
    autoaccel.prepare(model, optimizer, tabular(), loader_kwargs={"batch_size": 32}, config=config)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.4)
    assert "global batch went 32 -> 128, scaled by the linear rule" in capsys.readouterr().err

    model = mlp()
    adam = torch.optim.AdamW(
        [
            {"params": model[0].parameters(), "lr": 1e-3},
            {"params": model[2].parameters(), "lr": 1e-4},
        ]
    )
    config = TrainingConfig(batch_size=64, grad_accum_steps=2, lr_scaling="sqrt")
    autoaccel.prepare(model, adam, tabular(), loader_kwargs={"batch_size": 32}, config=config)
    assert [g["lr"] for g in adam.param_groups] == pytest.approx([2e-3, 2e-4])  # sqrt(128/32)
    err = capsys.readouterr().err
    assert "each of the 2 param groups (0.001, 0.0001) x2" in err


def test_without_a_scaling_rule_or_batch_change_the_lr_stays() -> None:
    model, optimizer = make(lr=0.1)
    config = TrainingConfig(batch_size=128)  # lr_scaling: none
    autoaccel.prepare(model, optimizer, tabular(), loader_kwargs={"batch_size": 32}, config=config)
    assert optimizer.param_groups[0]["lr"] == 0.1
    config = TrainingConfig(batch_size=32, lr_scaling="linear")
    autoaccel.prepare(model, optimizer, tabular(), loader_kwargs={"batch_size": 32}, config=config)
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_a_user_scheduler_follows_the_scaled_lr() -> None:
    model, optimizer = make(lr=0.1)
    mine = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    config = TrainingConfig(batch_size=64, lr_scaling="linear")
    run = autoaccel.prepare(
        model, optimizer, tabular(), loader_kwargs={"batch_size": 32}, scheduler=mine, config=config
    )
    x, y = next(iter(run.loader))
    run.backward(torch.nn.functional.cross_entropy(run.model(x), y))
    run.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2 * 0.5)  # scaled base, one decay


def test_a_scheduler_prepare_was_not_given_is_refused_where_the_config_sets_the_lr() -> None:
    """A LambdaLR (HF's get_linear_schedule_with_warmup is one) made on the optimizer but
    not given prepare(): at its first step it put the script's LR back, so a config's lr
    0.02 trained at 0.1. Now one line names the fix, and nothing is changed; given, the
    scheduler starts from the config's LR. A config that leaves the LR alone goes on."""
    config = TrainingConfig(batch_size=32, lr=0.02)
    model, optimizer = make(lr=0.1)
    mine = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    with pytest.raises(
        UsageError,
        match=r"^your optimizer has an LR scheduler that prepare\(\) was not given, and the "
        r"config sets the LR \(lr 0\.02\): pass it as prepare\(\.\.\., "
        r"scheduler=your_scheduler\)",
    ):
        autoaccel.prepare(model, optimizer, tabular(), config=config)
    assert optimizer.param_groups[0]["lr"] == 0.1  # nothing half-done
    run = autoaccel.prepare(model, optimizer, tabular(), scheduler=mine, config=config)
    x, y = next(iter(run.loader))
    run.backward(torch.nn.functional.cross_entropy(run.model(x), y))
    run.step()
    mine.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.02)
    model, optimizer = make(lr=0.1)
    torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    run = autoaccel.prepare(model, optimizer, tabular(), config=TrainingConfig(batch_size=64))
    assert run.batch_size == 64 and optimizer.param_groups[0]["lr"] == 0.1


def test_a_trials_schedule_spans_the_steps_it_is_measured_over() -> None:
    """``total_steps`` stretches a tuned schedule over the whole run in a normal run; in a
    trial (a schedule study's candidate) it spans its own ``schedule_steps``: the study
    measures the candidate over those, and a script under a trial may size total_steps by
    the 10**6 epochs it trains on for (before: the candidate's decay spanned them)."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    config = TrainingConfig(lr=0.3, schedule="linear", schedule_steps=10)
    trial = TrialSpec(config.to_dict(), False, {}, "started", "report")
    for spec, span in ((None, 100), (trial, 10)):
        chosen, scheduler = tuned_schedule(optimizer, config, None, 100, spec, [])
        assert chosen.schedule_steps == span and scheduler is not None


def test_tuned_momentum_and_total_steps(capsys: pytest.CaptureFixture[str]) -> None:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    config = TrainingConfig(lr=0.3, momentum=0.8, schedule="linear", schedule_steps=10)
    run = autoaccel.prepare(model, optimizer, tabular(), config=config, total_steps=100)
    assert optimizer.param_groups[0]["momentum"] == 0.8
    assert run.scheduler is not None
    optimizer.step()  # no gradients yet: a no-op, in the order torch expects
    run.scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.3 * 0.99)  # spans 100, not 10
    assert "momentum 0.9 -> 0.8" in capsys.readouterr().err

    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    autoaccel.prepare(model, adam, tabular(), config=TrainingConfig(momentum=0.85))
    assert adam.param_groups[0]["betas"] == (0.85, 0.999)
    autoaccel.prepare(model, adam, tabular(), config=config)
    assert "decays over 10 optimizer steps" in capsys.readouterr().err
