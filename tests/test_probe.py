from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import pynvml
import pytest
import torch

from autoaccel.probe import (
    GpuInfo,
    cgroup_quota_cores,
    match_torch_devices,
    probe_cpu,
    probe_gpus,
    probe_system,
)
from fake_nvml import FUNCTIONS, FakeGpu, FakeNvml

ENABLED, DISABLED = pynvml.NVML_FEATURE_ENABLED, pynvml.NVML_FEATURE_DISABLED


def test_real_probe_on_this_machine() -> None:
    profile = probe_system()
    cpu = profile.cpu
    assert 1 <= cpu.usable_cores <= cpu.logical_cores
    assert cpu.usable_cores <= len(os.sched_getaffinity(0))
    assert 0 < cpu.ram_available_bytes <= cpu.ram_total_bytes
    assert profile.software.torch == torch.__version__
    assert profile.software.cuda_available == torch.cuda.is_available()
    assert "32-true" in profile.supported_precisions()
    if not torch.cuda.is_available():
        assert profile.device_type == "cpu"
        assert profile.gpus == ()
        assert profile.nvml_status.startswith("no GPU:")
        assert "tf32" not in profile.supported_precisions()
    json.dumps(profile.to_dict())  # JSON-ready


def test_cpu_flags_come_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 9654\n"
        "flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 avx512_vnni\n"
    )
    cpu = probe_cpu(cgroup_root=tmp_path / "nocgroup", cpuinfo_path=cpuinfo)
    assert cpu.model == "AMD EPYC 9654"
    assert cpu.flags == ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni")


def test_bf16_native_only_with_the_flag(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Zen 4\nflags\t\t: avx2 avx512f avx512_bf16\n")
    profile = probe_system(
        nvml=FakeNvml([], init_error=pynvml.NVMLError_LibraryNotFound), cpuinfo_path=cpuinfo
    )
    if not torch.cuda.is_available():
        assert "native (avx512_bf16)" in profile.precision_reason("bf16-mixed")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
        ({"cpu/cpu.cfs_quota_us": "200000", "cpu/cpu.cfs_period_us": "100000"}, 2.0),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "50000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 0.5),
        ({}, None),
    ],
)
def test_cgroup_quota(tmp_path: Path, files: dict[str, str], expected: float | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_quota_cores(tmp_path) == expected


def test_usable_cores_obey_a_cgroup_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a core
    cpu = probe_cpu(cgroup_root=tmp_path)
    assert cpu.quota_cores == 0.5
    assert cpu.usable_cores == 1


def test_two_gpus_with_nvlink() -> None:
    nvml = FakeNvml(
        [
            FakeGpu(uuid="GPU-aaaa", bus_id="00000000:1B:00.0", nvlinks=(ENABLED,) * 18),
            FakeGpu(
                uuid="GPU-bbbb",
                bus_id="00000000:43:00.0",
                nvlinks=(ENABLED,) * 16 + (DISABLED,) * 2,
            ),
        ]
    )
    gpus, status, driver, cuda_driver = probe_gpus(nvml)
    assert status == "ok"
    assert (driver, cuda_driver) == ("580.65.06", "13.0")
    assert [g.nvlink_links_up for g in gpus] == [18, 16]
    first = gpus[0]
    assert first.name == "NVIDIA H100 80GB HBM3"
    assert first.memory_total_bytes == 80 * 2**30
    assert first.compute_capability == "9.0"
    assert (first.pcie_gen_current, first.pcie_gen_max) == (5, 5)
    assert (first.pcie_width_current, first.pcie_width_max) == (16, 16)
    assert first.power_limit_w == 700.0
    assert first.max_sm_clock_mhz == 1980
    assert not nvml.initialised  # shut down afterwards


def test_unsupported_pcie_queries_are_unknown_not_errors() -> None:
    pcie_calls = (
        "nvmlDeviceGetCurrPcieLinkGeneration",
        "nvmlDeviceGetMaxPcieLinkGeneration",
        "nvmlDeviceGetCurrPcieLinkWidth",
        "nvmlDeviceGetMaxPcieLinkWidth",
    )
    gpu = FakeGpu(
        name="NVIDIA A10G",
        capability=(8, 6),
        raises={c: pynvml.NVMLError_NotSupported for c in pcie_calls}
        | {"nvmlDeviceGetPowerManagementLimit": pynvml.NVMLError_NoPermission},
    )
    (info,), status, _, _ = probe_gpus(FakeNvml([gpu]))
    assert status == "ok"
    assert info.pcie_gen_current is None and info.pcie_width_max is None
    assert info.power_limit_w is None
    assert info.nvlink_links_up == 0
    assert info.compute_capability == "8.6"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (pynvml.NVMLError_LibraryNotFound, "no GPU: the NVML library is not installed"),
        (pynvml.NVMLError_DriverNotLoaded, "no GPU: the NVIDIA driver is not loaded"),
    ],
)
def test_no_library_or_no_driver_is_a_normal_answer(error: type, reason: str) -> None:
    profile = probe_system(nvml=FakeNvml([], init_error=error))
    if not torch.cuda.is_available():
        assert profile.gpus == ()
        assert profile.nvml_status.startswith(reason)
        assert "\n" not in profile.nvml_status


def test_no_devices_is_a_normal_answer() -> None:
    gpus, status, _, _ = probe_gpus(FakeNvml([]))
    assert gpus == ()
    assert status == "no GPU: the NVIDIA driver reports no devices"


def test_nvml_devices_map_to_torch_by_uuid_not_index() -> None:
    nvml = FakeNvml(
        [
            FakeGpu(uuid="GPU-aaaa-1111", bus_id="00000000:1B:00.0"),
            FakeGpu(uuid="GPU-bbbb-2222", bus_id="00000000:43:00.0"),
            FakeGpu(uuid="GPU-cccc-3333", bus_id="00000000:52:00.0"),
        ]
    )
    gpus, _, _, _ = probe_gpus(nvml)
    # CUDA_VISIBLE_DEVICES=2,0: torch's cuda:0 is NVML's third device; the first is hidden.
    torch_devices: list[tuple[str | None, str | None]] = [("cccc-3333", None), ("aaaa-1111", None)]
    mapped = match_torch_devices(gpus, torch_devices)
    assert [g.torch_index for g in mapped] == [1, None, 0]
    # Without UUIDs, the PCI bus id decides.
    by_pci = match_torch_devices(gpus, [(None, "00000000:43:00.0")])
    assert [g.torch_index for g in by_pci] == [None, 0, None]


def test_fake_nvml_matches_the_real_module() -> None:
    for name in FUNCTIONS:
        real = getattr(pynvml, name)
        fake = getattr(FakeNvml([]), name)
        real_params = [p for p in inspect.signature(real).parameters if p != "self"]
        fake_params = list(inspect.signature(fake).parameters)
        assert real_params == fake_params, name


@pytest.mark.gpu
def test_real_nvml_contract() -> None:
    gpus, status, driver, _ = probe_gpus(pynvml)
    assert status == "ok" and driver
    assert all(isinstance(g, GpuInfo) and g.memory_total_bytes for g in gpus)
    profile = probe_system()
    assert {g.torch_index for g in profile.gpus if g.torch_index is not None} == set(
        range(torch.cuda.device_count())
    )
