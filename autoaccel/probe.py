"""What this machine can do for training: CPU, memory, NVIDIA GPUs, software, precisions.

``probe_system()`` never raises for missing hardware: no NVML library, no driver or no GPU
is a normal answer with a one-line reason, and a query a device does not support is
recorded as unknown (``None``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import psutil
import pynvml

from autoaccel.states import PRECISIONS

__all__ = [
    "PRECISIONS",
    "CpuInfo",
    "GpuInfo",
    "HardwareProfile",
    "PrecisionSupport",
    "SoftwareInfo",
    "probe_system",
]

#: Every precision autoaccel knows, in the order it prefers to try them.

#: CPU flags that change how fast training can go.
TRAINING_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_fp16",
    "avx512_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_fp16",
)

T = TypeVar("T")


@dataclass(frozen=True)
class CpuInfo:
    """Probed CPU and memory facts."""

    model: str
    logical_cores: int
    physical_cores: int | None  # psutil may not know
    affinity_cores: int  # cores this process may be scheduled on
    quota_cores: float | None  # cgroup CPU quota in cores; None = no limit
    usable_cores: int  # min(affinity, ceil(quota))
    flags: tuple[str, ...]  # the training-relevant ISA flags present
    ram_total_bytes: int
    ram_available_bytes: int


@dataclass(frozen=True)
class GpuInfo:
    """One NVIDIA GPU as NVML sees it; ``None`` means the device did not say."""

    nvml_index: int
    name: str
    uuid: str
    pci_bus_id: str | None
    memory_total_bytes: int | None
    memory_free_bytes: int | None
    compute_capability: str | None  # "9.0"
    pcie_gen_current: int | None
    pcie_gen_max: int | None
    pcie_width_current: int | None
    pcie_width_max: int | None
    nvlink_links_up: int | None
    power_limit_w: float | None
    max_sm_clock_mhz: int | None
    torch_index: int | None  # the cuda:N this GPU is, matched by UUID / PCI id; None = hidden


@dataclass(frozen=True)
class SoftwareInfo:
    """Versions and what torch can use here."""

    python: str
    torch: str
    cuda: str | None
    cudnn: str | None
    nccl: str | None
    cuda_available: bool
    cuda_device_count: int
    cuda_bf16_supported: bool
    compile_available: bool
    compile_reason: str


@dataclass(frozen=True)
class PrecisionSupport:
    """Whether a precision can run here, and why not when it cannot."""

    precision: str
    supported: bool
    reason: str


@dataclass(frozen=True)
class HardwareProfile:
    """Everything ``probe_system`` found.

    Example:
        >>> from autoaccel import probe_system
        >>> profile = probe_system()
        >>> profile.cpu.usable_cores >= 1
        True
    """

    cpu: CpuInfo
    gpus: tuple[GpuInfo, ...]
    nvml_status: str  # "ok" or a one-line reason why no GPU was probed
    driver_version: str | None
    cuda_driver_version: str | None
    software: SoftwareInfo
    precisions: tuple[PrecisionSupport, ...]
    probe_s: float

    @property
    def usable_gpus(self) -> int:
        """GPUs torch can use here (0 without CUDA)."""
        return self.software.cuda_device_count if self.software.cuda_available else 0

    @property
    def device_type(self) -> str:
        """``"cuda"`` when torch can use a GPU here, else ``"cpu"``."""
        return "cuda" if self.software.cuda_available else "cpu"

    def precisions_on(self, device_type: str | None = None) -> tuple[PrecisionSupport, ...]:
        """What each precision can do on ``device_type`` (``"cpu"`` or ``"cuda"``); by
        default on this machine's accelerator, or its CPU when it has none."""
        if device_type == "cpu" and self.software.cuda_available:
            cpu_only = replace(self.software, cuda_available=False, cuda_device_count=0)
            return precision_support(self.cpu, (), cpu_only)
        return self.precisions

    def supported_precisions(self, device_type: str | None = None) -> tuple[str, ...]:
        """The precisions this machine can run (on ``device_type``), in preference order."""
        return tuple(p.precision for p in self.precisions_on(device_type) if p.supported)

    def precision_reason(self, precision: str, device_type: str | None = None) -> str:
        """Why ``precision`` can or cannot run here (on ``device_type``)."""
        for p in self.precisions_on(device_type):
            if p.precision == precision:
                return p.reason
        return f"unknown precision {precision!r}"

    def facts(self) -> dict[str, str | int]:
        """The hardware facts a config's measurements depend on (what the fingerprint
        hashes, and what a config records to name what differs on another machine)."""
        gpus = sorted((g.name, round((g.memory_total_bytes or 0) / 2**30)) for g in self.gpus)
        return {
            "cpu": self.cpu.model,
            "logical_cores": self.cpu.logical_cores,
            "usable_cores": self.cpu.usable_cores,
            "ram_gib": round(self.cpu.ram_total_bytes / 2**30),
            "gpus": ", ".join(f"{name} ({gib} GiB)" for name, gib in gpus) or "none",
        }

    def fingerprint(self) -> str:
        """A short hash of the hardware a config's measurements depend on."""
        facts = {
            **self.facts(),
            "gpus": sorted((g.name, round((g.memory_total_bytes or 0) / 2**30)) for g in self.gpus),
        }
        blob = json.dumps(facts, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def describe(self) -> str:
        """One line naming the hardware, for provenance and warnings."""
        gpus = ", ".join(g.name for g in self.gpus) or "no GPU"
        return f"{self.cpu.model}, {self.cpu.usable_cores} usable cores, {gpus}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy; the profile itself is not changed."""
        data = dataclasses.asdict(self)
        data["fingerprint"] = self.fingerprint()
        return data


# --- CPU -------------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_quota_cores(cgroup_root: Path) -> float | None:
    """CPU quota in cores from cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``.

    Returns ``None`` when there is no limit or no cgroup file to read.
    """
    v2 = _read(cgroup_root / "cpu.max")
    if v2:
        quota, _, period = v2.partition(" ")
        if quota == "max" or not period:
            return None
        return int(quota) / int(period)
    for v1_dir in (cgroup_root / "cpu", cgroup_root / "cpu,cpuacct", cgroup_root):
        quota_s = _read(v1_dir / "cpu.cfs_quota_us")
        period_s = _read(v1_dir / "cpu.cfs_period_us")
        if quota_s is not None and period_s is not None:
            quota_us = int(quota_s)
            return None if quota_us <= 0 else quota_us / int(period_s)
    return None


def _cpuinfo(cpuinfo_path: Path) -> tuple[str, set[str]]:
    text = _read(cpuinfo_path) or ""
    model, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model or platform.processor() or platform.machine(), flags


def probe_cpu(
    *, cgroup_root: Path = Path("/sys/fs/cgroup"), cpuinfo_path: Path = Path("/proc/cpuinfo")
) -> CpuInfo:
    """Probe the CPU, the cores this process may use, and RAM."""
    model, flags = _cpuinfo(cpuinfo_path)
    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        affinity = logical
    quota = cgroup_quota_cores(cgroup_root)
    usable = affinity if quota is None else max(1, min(affinity, math.ceil(quota)))
    memory = psutil.virtual_memory()
    return CpuInfo(
        model=model,
        logical_cores=logical,
        physical_cores=psutil.cpu_count(logical=False),
        affinity_cores=affinity,
        quota_cores=quota,
        usable_cores=usable,
        flags=tuple(f for f in TRAINING_FLAGS if f in flags),
        ram_total_bytes=memory.total,
        ram_available_bytes=memory.available,
    )


# --- NVIDIA GPUs through NVML ------------------------------------------------------------


def _optional(nvml: ModuleType, query: Callable[[], T]) -> T | None:
    """Run one NVML query; a device that cannot answer it gives ``None``, not an error."""
    try:
        return query()
    except nvml.NVMLError:
        return None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _nvlink_links_up(nvml: ModuleType, handle: Any) -> int | None:
    up, refused = 0, 0
    for link in range(nvml.NVML_NVLINK_MAX_LINKS):
        try:
            state = nvml.nvmlDeviceGetNvLinkState(handle, link)
        except nvml.NVMLError_NotSupported:
            break  # the first unsupported link is past this device's last one
        except nvml.NVMLError:
            refused += 1  # e.g. no permission: this link's state is unknown
            continue
        up += int(state == nvml.NVML_FEATURE_ENABLED)
    return None if refused and not up else up


def _probe_one_gpu(nvml: ModuleType, index: int) -> GpuInfo:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    memory = _optional(nvml, lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
    capability = _optional(nvml, lambda: nvml.nvmlDeviceGetCudaComputeCapability(handle))
    power_mw = _optional(nvml, lambda: nvml.nvmlDeviceGetPowerManagementLimit(handle))
    pci = _optional(nvml, lambda: nvml.nvmlDeviceGetPciInfo(handle))
    return GpuInfo(
        nvml_index=index,
        name=_text(nvml.nvmlDeviceGetName(handle)),
        uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
        pci_bus_id=_text(pci.busId) if pci is not None else None,
        memory_total_bytes=int(memory.total) if memory is not None else None,
        memory_free_bytes=int(memory.free) if memory is not None else None,
        compute_capability=f"{capability[0]}.{capability[1]}" if capability else None,
        pcie_gen_current=_optional(nvml, lambda: nvml.nvmlDeviceGetCurrPcieLinkGeneration(handle)),
        pcie_gen_max=_optional(nvml, lambda: nvml.nvmlDeviceGetMaxPcieLinkGeneration(handle)),
        pcie_width_current=_optional(nvml, lambda: nvml.nvmlDeviceGetCurrPcieLinkWidth(handle)),
        pcie_width_max=_optional(nvml, lambda: nvml.nvmlDeviceGetMaxPcieLinkWidth(handle)),
        nvlink_links_up=_nvlink_links_up(nvml, handle),
        power_limit_w=power_mw / 1000 if power_mw is not None else None,
        max_sm_clock_mhz=_optional(
            nvml, lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM)
        ),
        torch_index=None,
    )


def _cuda_driver_version(raw: int | None) -> str | None:
    # NVML encodes CUDA 12.4 as 12040.
    return None if raw is None else f"{raw // 1000}.{(raw % 1000) // 10}"


def probe_gpus(
    nvml: ModuleType = pynvml,
) -> tuple[tuple[GpuInfo, ...], str, str | None, str | None]:
    """Probe NVIDIA GPUs. Returns ``(gpus, status, driver_version, cuda_driver_version)``.

    ``status`` is ``"ok"`` or one line saying why there are no GPUs; nothing is raised for
    a machine without NVIDIA hardware.
    """
    try:
        nvml.nvmlInit()
    except nvml.NVMLError_LibraryNotFound:
        return (), "no GPU: the NVML library is not installed (no NVIDIA driver)", None, None
    except nvml.NVMLError_DriverNotLoaded:
        return (), "no GPU: the NVIDIA driver is not loaded", None, None
    except nvml.NVMLError as error:
        return (), f"no GPU: NVML could not start ({error})", None, None
    try:
        driver = _optional(nvml, lambda: _text(nvml.nvmlSystemGetDriverVersion()))
        cuda_driver = _cuda_driver_version(
            _optional(nvml, lambda: nvml.nvmlSystemGetCudaDriverVersion())
        )
        count = nvml.nvmlDeviceGetCount()
        gpus = tuple(_probe_one_gpu(nvml, i) for i in range(count))
    except nvml.NVMLError as error:
        return (), f"no GPU: NVML query failed ({error})", None, None
    finally:
        _optional(nvml, nvml.nvmlShutdown)
    status = "ok" if gpus else "no GPU: the NVIDIA driver reports no devices"
    return gpus, status, driver, cuda_driver


def _normalise_uuid(uuid: str) -> str:
    return uuid.lower().removeprefix("gpu-").removeprefix("mig-")


def _normalise_pci(bus_id: str) -> str:
    # NVML: "00000000:3B:00.0"; torch: domain, bus, device as integers.
    return bus_id.lower()[-12:]


def match_torch_devices(
    gpus: tuple[GpuInfo, ...], torch_devices: list[tuple[str | None, str | None]]
) -> tuple[GpuInfo, ...]:
    """Set ``torch_index`` on each GPU by UUID, falling back to PCI bus id.

    NVML counts in PCI order and ignores ``CUDA_VISIBLE_DEVICES``; torch does not, so
    indices cannot be compared. ``torch_devices[i]`` is ``(uuid, pci_bus_id)`` of ``cuda:i``.
    """
    matched = []
    for gpu in gpus:
        index = None
        for i, (uuid, pci) in enumerate(torch_devices):
            if (uuid and _normalise_uuid(uuid) == _normalise_uuid(gpu.uuid)) or (
                pci and gpu.pci_bus_id and _normalise_pci(pci) == _normalise_pci(gpu.pci_bus_id)
            ):
                index = i
            if index is not None:
                break
        matched.append(dataclasses.replace(gpu, torch_index=index))
    return tuple(matched)


def _torch_devices() -> list[tuple[str | None, str | None]]:
    import torch

    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        uuid = getattr(props, "uuid", None)
        pci = None
        if hasattr(props, "pci_bus_id"):
            domain = getattr(props, "pci_domain_id", 0)
            device = getattr(props, "pci_device_id", 0)
            pci = f"{domain:08x}:{props.pci_bus_id:02x}:{device:02x}.0"
        devices.append((str(uuid) if uuid is not None else None, pci))
    return devices


# --- Software ----------------------------------------------------------------------------


def compile_support() -> tuple[bool, str]:
    """Whether ``torch.compile`` (inductor) can work here, and why not."""
    import torch

    # find_spec, not import: importing inductor costs 1.5 s, and probe must stay quick.
    if importlib.util.find_spec("torch._inductor") is None:
        return False, "this torch build has no inductor"
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")
    if not compiler:
        return False, "no C++ compiler (g++ or clang++) for inductor's CPU kernels"
    if torch.cuda.is_available() and importlib.util.find_spec("triton") is None:
        return False, "triton is not installed, inductor cannot build GPU kernels"
    if sys.platform == "win32":
        return False, "torch.compile is not supported on Windows by this autoaccel"
    return True, f"inductor with {Path(compiler).name}"


def probe_software() -> SoftwareInfo:
    """Versions of Python, torch, CUDA, cuDNN and NCCL, and torch's view of the GPUs."""
    import torch  # loaded here: a light probe never needs it

    cuda_available = torch.cuda.is_available()
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    nccl = None
    if cuda_available:
        raw = torch.cuda.nccl.version()
        nccl = ".".join(map(str, raw)) if isinstance(raw, tuple) else str(raw)
    can_compile, compile_reason = compile_support()
    return SoftwareInfo(
        python=platform.python_version(),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cudnn=str(cudnn) if cudnn else None,
        nccl=nccl,
        cuda_available=cuda_available,
        cuda_device_count=torch.cuda.device_count() if cuda_available else 0,
        cuda_bf16_supported=cuda_available and torch.cuda.is_bf16_supported(),
        compile_available=can_compile,
        compile_reason=compile_reason,
    )


def precision_support(
    cpu: CpuInfo, gpus: tuple[GpuInfo, ...], software: SoftwareInfo
) -> tuple[PrecisionSupport, ...]:
    """Which precisions this machine can train in, with the reason for each answer."""
    if software.cuda_available:
        capabilities = [
            float(g.compute_capability)
            for g in gpus
            if g.compute_capability and g.torch_index is not None
        ] or [float(g.compute_capability) for g in gpus if g.compute_capability]
        if not capabilities:  # NVML absent but CUDA works: ask torch
            import torch

            major, minor = torch.cuda.get_device_capability(0)
            capabilities = [major + minor / 10]
        lowest = min(capabilities)
        ampere = lowest >= 8.0
        return (
            PrecisionSupport("32-true", True, "always available"),
            PrecisionSupport(
                "tf32",
                ampere,
                "TF32 tensor cores (compute capability >= 8.0)"
                if ampere
                else f"needs compute capability >= 8.0, lowest GPU here is {lowest}",
            ),
            PrecisionSupport(
                "bf16-mixed",
                software.cuda_bf16_supported,
                "torch reports bf16 support on this GPU"
                if software.cuda_bf16_supported
                else f"bf16 needs compute capability >= 8.0, lowest GPU here is {lowest}",
            ),
            PrecisionSupport(
                "16-mixed",
                lowest >= 5.3,
                "fp16 autocast with GradScaler"
                if lowest >= 5.3
                else f"fp16 needs compute capability >= 5.3, lowest GPU here is {lowest}",
            ),
        )
    fast_bf16 = {"avx512_bf16", "amx_bf16"} & set(cpu.flags)
    # avx512_fp16 alone is not enough: on a Xeon with it (and AMX for bf16 only), an fp16
    # autocast step of the example CNN took 1.85 s against bf16's 0.016 s (torch 2.13).
    fast_fp16 = {"amx_fp16"} & set(cpu.flags)
    bf16_reason = (
        f"CPU autocast in bf16, native ({', '.join(sorted(fast_bf16))})"
        if fast_bf16
        else "CPU autocast in bf16, without avx512_bf16/amx_bf16 (converted in software: "
        "measure before trusting it)"
    )
    return (
        PrecisionSupport("32-true", True, "always available"),
        PrecisionSupport("tf32", False, "TF32 is a CUDA feature (compute capability >= 8.0)"),
        PrecisionSupport("bf16-mixed", True, bf16_reason),
        PrecisionSupport(
            "16-mixed",
            bool(fast_fp16),
            f"CPU autocast in fp16, native ({', '.join(sorted(fast_fp16))})"
            if fast_fp16
            else "the CPU has no amx_fp16: fp16 autocast runs far slower than bf16 here "
            "(measured ~100x on a small CNN with avx512_fp16 alone)",
        ),
    )


def software_unprobed(gpus: tuple[GpuInfo, ...]) -> SoftwareInfo:
    """What a light probe knows without loading torch: versions from the installed
    packages' metadata, and NVML's view of the GPUs (bf16 from compute capability >= 8.0)."""
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"
    capabilities = [float(g.compute_capability) for g in gpus if g.compute_capability]
    return SoftwareInfo(
        python=platform.python_version(),
        torch=version,
        cuda=None,
        cudnn=None,
        nccl=None,
        cuda_available=bool(gpus),
        cuda_device_count=len(gpus),
        cuda_bf16_supported=bool(capabilities) and min(capabilities) >= 8.0,
        compile_available=False,
        compile_reason="not probed (a light probe, without loading torch)",
    )


def probe_system(
    *,
    nvml: ModuleType = pynvml,
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    cpuinfo_path: Path = Path("/proc/cpuinfo"),
    light: bool = False,
) -> HardwareProfile:
    """Probe this machine for everything that decides how fast training can go.

    Args:
        nvml: The NVML bindings; the real ``pynvml`` unless a test passes a fake.
        cgroup_root: Where the cgroup files live (for the CPU quota).
        cpuinfo_path: Where the CPU model and flags are read from.
        light: Do not load torch (for ``autoaccel show``, in well under a second): the
            hardware, its fingerprint and the precisions it can run are the same; torch's
            own view (CUDA, cuDNN, compile) is left out.

    Returns:
        The ``HardwareProfile``. No GPU, no NVML or no driver is a normal answer.

    Example:
        >>> profile = probe_system()
        >>> "32-true" in profile.supported_precisions()
        True
    """
    start = time.perf_counter()
    cpu = probe_cpu(cgroup_root=cgroup_root, cpuinfo_path=cpuinfo_path)
    gpus, status, driver, cuda_driver = probe_gpus(nvml)
    software = software_unprobed(gpus) if light else probe_software()
    if gpus and software.cuda_available and not light:
        gpus = match_torch_devices(gpus, _torch_devices())
    return HardwareProfile(
        cpu=cpu,
        gpus=gpus,
        nvml_status=status,
        driver_version=driver,
        cuda_driver_version=cuda_driver,
        software=software,
        precisions=precision_support(cpu, gpus, software),
        probe_s=time.perf_counter() - start,
    )
