"""The device decision (issue 32), on a machine without a GPU: the rule for each case, the
config's validation, what prepare() moves and sets, and the search space a probe with an
H100 (the fake NVML) gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import autoaccel
from autoaccel.config import TrainingConfig, load_config, save_config
from autoaccel.errors import ConfigError
from autoaccel.probe import probe_system
from autoaccel.runtime.device import apply_optimizer_impl, choose_device, optimizer_impls, place
from autoaccel.search import Diagnosis, build_space
from autoaccel.search.heuristics import guesses
from autoaccel.states import Bound
from tests.fake_nvml import FakeGpu, FakeNvml

CPU = torch.device("cpu")


def test_no_gpu_keeps_the_cpu() -> None:
    choice = choose_device("auto", CPU, cuda_count=0)
    assert (choice.device, choice.moved) == (CPU, False)
    assert "no GPU" in choice.reason


def test_a_gpu_and_a_model_left_on_the_cpu_trains_on_the_gpu() -> None:
    choice = choose_device("auto", CPU, cuda_count=2)
    assert (choice.device, choice.moved) == (torch.device("cuda", 0), True)
    assert "left the model on the CPU" in choice.reason or "left on the CPU" in choice.reason


def test_a_model_the_user_placed_stays_and_they_are_told() -> None:
    placed = torch.device("cuda", 1)
    choice = choose_device("auto", placed, cuda_count=2)
    assert (choice.device, choice.moved) == (placed, False)
    assert "your code placed the model on cuda:1" in choice.reason


def test_under_torchrun_each_process_takes_its_own_gpu() -> None:
    assert choose_device("cuda", CPU, cuda_count=4, local_rank=3).device == torch.device("cuda", 3)
    placed = choose_device("auto", torch.device("cuda", 0), cuda_count=2, local_rank=1)
    assert (placed.device, placed.moved) == (torch.device("cuda", 1), True)


def test_the_config_can_ask_for_the_cpu_on_a_gpu_machine() -> None:
    choice = choose_device("cpu", torch.device("cuda", 0), cuda_count=1)
    assert (choice.device, choice.moved) == (CPU, True)


@pytest.mark.parametrize(
    ("requested", "count", "words"),
    [
        ("cuda", 0, "torch can use none here"),
        ("cuda:3", 2, "cuda:0..cuda:1"),
        ("gpu", 1, "expected auto, cpu, cuda or cuda:N"),
    ],
)
def test_a_gpu_the_machine_lacks_is_one_clear_error(requested: str, count: int, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        choose_device(requested, CPU, cuda_count=count)


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_spellings_that_load(value: str) -> None:
    assert TrainingConfig(device=value).device == value


@pytest.mark.parametrize("value", ["gpu:0", "cuda:", "CUDA", "cuda:x", "mps "])
def test_device_spellings_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="device: expected auto, cpu, cuda or cuda:N"):
        TrainingConfig(device=value)


def test_configs_without_device_still_load_as_auto(tmp_path: Path) -> None:
    path = tmp_path / "autoaccel.yaml"
    path.write_text("batch_size: 64\nprecision: 32-true\n")
    assert load_config(path).device == "auto"


def test_device_cuda_in_a_config_on_this_machine_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "autoaccel.yaml"
    save_config(TrainingConfig(device="cuda"), path)
    with pytest.raises(ConfigError) as caught:
        load_config(path, profile=probe_system())
    assert "device: 'cuda', but torch can use no CUDA GPU here" in str(caught.value)


def test_cli_exits_2_on_a_cuda_config_without_a_gpu(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "autoaccel.yaml"
    save_config(TrainingConfig(device="cuda:0"), config)
    script = tmp_path / "train.py"
    script.write_text("import autoaccel\nautoaccel.prepare(model, optimizer, data)\n")
    done = subprocess.run(
        [sys.executable, "-m", "autoaccel.cli", "run", str(script), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "no CUDA GPU" in done.stderr
    assert "Traceback" not in done.stderr


def test_place_moves_the_model_and_the_optimizer_state() -> None:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    place(model, optimizer, torch.device("meta"))
    assert {p.device.type for p in model.parameters()} == {"meta"}
    state = optimizer.state[model.weight]
    assert state["exp_avg"].device.type == "meta"
    assert state["step"].device.type == "cpu"  # torch keeps the scalar step count there
    assert optimizer.param_groups[0]["params"] == list(model.parameters())


def test_prepare_moves_a_cpu_model_to_a_usable_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a GPU usable (torch.cuda patched) and no config, a config of ``device: auto``
    moves the model and the optimizer before anything wraps them."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    set_to: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "set_device", set_to.append)
    moved: list[tuple[Any, ...]] = []

    class Placed(Exception):
        pass

    def spy(model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
        moved.append((model, optimizer, device))
        raise Placed  # stop here: this machine cannot run on the GPU

    monkeypatch.setattr("autoaccel.runtime.prepare.place", spy)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = (torch.randn(16, 3), torch.randint(0, 2, (16,)))
    with pytest.raises(Placed):
        autoaccel.prepare(model, optimizer, data, config=TrainingConfig(device="auto"))
    assert moved == [(model, optimizer, torch.device("cuda", 0))]
    assert set_to == [torch.device("cuda", 0)]


def test_prepare_without_a_config_trains_where_the_script_put_the_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No autoaccel.yaml: your own settings run unchanged, on your model's device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    model = nn.Linear(3, 2)
    run = autoaccel.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1), None)
    assert run.device == CPU
    assert run.config.device == "cpu"


def test_prepare_sets_the_accelerator_knobs() -> None:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    config = TrainingConfig(device="cpu", cudnn_benchmark=True, optimizer_impl="fused")
    run = autoaccel.prepare(model, optimizer, (torch.randn(8, 3), torch.randn(8, 2)), config=config)
    assert torch.backends.cudnn.benchmark is True
    assert optimizer.param_groups[0]["fused"] is True
    for x, y in run.loader:  # a fused step runs (torch has fused SGD on the CPU too)
        run.backward(nn.functional.mse_loss(run.model(x), y))
        run.step()


def test_an_optimizer_without_the_implementation_is_told_and_runs_as_it_is() -> None:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.LBFGS(model.parameters())
    assert optimizer_impls(optimizer) == ("default",)
    refused = apply_optimizer_impl(optimizer, "fused")
    assert refused is not None and "LBFGS has no fused implementation" in refused


def test_foreach_switches_fused_off() -> None:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    assert apply_optimizer_impl(optimizer, "foreach") is None
    group = optimizer.param_groups[0]
    assert (group["foreach"], group["fused"]) == (True, False)


def _h100() -> Any:
    return probe_system(nvml=FakeNvml([FakeGpu()]), light=True)


def test_the_search_space_a_machine_with_an_h100_gets() -> None:
    profile = _h100()
    user = TrainingConfig(batch_size=32, num_threads=16, device="cpu")
    choice = choose_device("auto", CPU, cuda_count=profile.usable_gpus)
    space = build_space(
        profile,
        user,
        dataset_size=50_000,
        device=choice.device,
        conv_model=True,
        tensor_data=False,
        baseline_memory_bytes=None,
        include_parallel=True,
        optimizer="AdamW",
        device_reason=choice.reason,
    )
    assert space.knob("device").choices == ("cuda", "cpu")  # the GPU first, yours kept
    assert set(space.knob("precision").choices) == {"32-true", "tf32", "bf16-mixed", "16-mixed"}
    assert space.knob("cudnn_benchmark").choices == (False, True)
    assert space.knob("optimizer_impl").choices == ("default", "foreach", "fused")
    assert space.knob("pin_memory").choices == (False, True)
    assert "num_threads" in space.excluded  # the GPU computes
    assert "processes" in space.excluded  # one GPU: one process
    assert space.memory.budget_bytes == 80 * 2**30  # NVML's memory of the H100
    first, *rest = guesses(space, user, Diagnosis(Bound.COMPUTE, 0.1, None, 0, ()), profile)
    assert space.params_of(first) == {**space.params_of(user), "device": "cuda"}
    assert all(g.device == "cuda" for g in rest)
    assert any(g.optimizer_impl == "fused" and g.cudnn_benchmark for g in rest)


def test_a_cpu_search_is_unchanged_by_the_gpu_knobs() -> None:
    profile = probe_system(nvml=FakeNvml([]), light=True)
    user = TrainingConfig(batch_size=32, device="cpu")
    space = build_space(
        profile,
        user,
        dataset_size=4096,
        device=CPU,
        conv_model=True,
        tensor_data=False,
        baseline_memory_bytes=None,
        optimizer="SGD",
        device_reason=choose_device("auto", CPU, cuda_count=0).reason,
    )
    for knob in ("device", "cudnn_benchmark", "optimizer_impl", "pin_memory"):
        assert knob not in space.names
        assert knob in space.excluded
    assert "tf32" not in space.knob("precision").choices


def test_the_cpu_precisions_of_a_gpu_machine_are_the_cpus() -> None:
    profile = _h100()
    assert "tf32" in profile.supported_precisions()
    assert "tf32" not in profile.supported_precisions("cpu")
    problems = TrainingConfig(device="cpu", precision="tf32").check_for(profile)
    assert any("precision: 'tf32' cannot run here" in p for p in problems)


@pytest.mark.gpu
def test_on_a_gpu_prepare_trains_a_cpu_model_there_in_fp16() -> None:
    """Run by bench/gpu_check.sh on a GPU machine: the model left on the CPU trains on the
    GPU, in fp16 with GradScaler, cuDNN autotuned, the fused optimizer, pinned batches."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 30 * 30, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = (torch.randn(64, 3, 32, 32), torch.randint(0, 2, (64,)))
    config = TrainingConfig(
        batch_size=16,
        precision="16-mixed",
        cudnn_benchmark=True,
        optimizer_impl="fused",
        pin_memory=True,
        channels_last=True,
    )
    run = autoaccel.prepare(model, optimizer, data, config=config)
    assert run.device.type == "cuda"
    assert next(model.parameters()).device.type == "cuda"
    for x, y in run.loader:
        assert x.device.type == "cuda"
        with run.autocast():
            loss = nn.functional.cross_entropy(run.model(x), y)
        run.backward(loss)
        run.step()
    assert optimizer.state[next(model.parameters())]["exp_avg"].device.type == "cuda"


def test_tune_and_advise_say_where_the_trials_trained() -> None:
    """A model your code placed on a GPU is kept, and the advice's notes say so."""
    from autoaccel.measure import Measurement
    from autoaccel.pipeline import Job
    from autoaccel.search import WorkloadFacts

    def job(model_at: torch.device, profile: Any) -> Job:
        facts = WorkloadFacts("Net", 10, 64, False, True, model_at, 0.5)
        m = Measurement(outcome="ok")
        return Job(lambda c, p=None: m, TrainingConfig(), m, facts, profile)

    placed = job(torch.device("cuda", 0), _h100()).device_notes()
    assert placed == ["trials on cuda:0: your code placed the model on cuda:0: kept"]
    (moved,) = job(CPU, _h100()).device_notes()
    assert moved.endswith("a GPU is usable here and the model was left on the CPU: cuda:0")
    assert job(CPU, probe_system(nvml=FakeNvml([]), light=True)).device_notes() == []
