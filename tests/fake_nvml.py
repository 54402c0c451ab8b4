"""One fake at the NVML boundary, shaped exactly like ``nvidia-ml-py``'s ``pynvml``.

Same function names and signatures, the real exception classes and constants (taken from the
installed ``pynvml``), the same return shapes (``c_nvmlMemory_t``-like objects with
``.total/.free/.used``, ``(major, minor)`` tuples, milliwatts). ``test_probe`` checks that
every name here exists in the real module, so the fake cannot drift from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml

# Names the fake serves; a contract test checks each exists in the real pynvml.
FUNCTIONS = (
    "nvmlInit",
    "nvmlShutdown",
    "nvmlSystemGetDriverVersion",
    "nvmlSystemGetCudaDriverVersion",
    "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetName",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetPciInfo",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetCudaComputeCapability",
    "nvmlDeviceGetCurrPcieLinkGeneration",
    "nvmlDeviceGetMaxPcieLinkGeneration",
    "nvmlDeviceGetCurrPcieLinkWidth",
    "nvmlDeviceGetMaxPcieLinkWidth",
    "nvmlDeviceGetNvLinkState",
    "nvmlDeviceGetPowerManagementLimit",
    "nvmlDeviceGetMaxClockInfo",
)


@dataclass
class FakeGpu:
    """What one fake device answers; an exception class in ``raises`` makes that call fail."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-8d3f5a52-1b2c-4d5e-9f00-000000000000"
    bus_id: str = "00000000:1B:00.0"
    total: int = 80 * 2**30
    free: int = 79 * 2**30
    capability: tuple[int, int] = (9, 0)
    pcie: tuple[int, int, int, int] = (5, 5, 16, 16)  # gen cur/max, width cur/max
    nvlinks: tuple[int, ...] = ()  # per link: NVML_FEATURE_ENABLED or DISABLED
    power_mw: int = 700_000
    sm_clock_mhz: int = 1980
    raises: dict[str, type[Exception]] = field(default_factory=dict)


class FakeNvml:
    """A stand-in for the ``pynvml`` module over a list of ``FakeGpu``."""

    def __init__(
        self,
        gpus: list[FakeGpu],
        *,
        init_error: type[Exception] | None = None,
        driver: str = "580.65.06",
        cuda_driver: int = 13000,
    ) -> None:
        self._gpus = gpus
        self._init_error = init_error
        self._driver = driver
        self._cuda_driver = cuda_driver
        self.initialised = False
        # The real module's exceptions and constants, so `except nvml.X` means the same.
        for name in dir(pynvml):
            if name.startswith(("NVMLError", "NVML_")):
                setattr(self, name, getattr(pynvml, name))

    def _gpu(self, handle: Any, call: str) -> FakeGpu:
        gpu: FakeGpu = handle.gpu
        if call in gpu.raises:
            raise gpu.raises[call]()
        return gpu

    def nvmlInit(self) -> None:
        if self._init_error is not None:
            raise self._init_error()
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        return self._driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self._cuda_driver

    def nvmlDeviceGetCount(self) -> int:
        return len(self._gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        if not 0 <= index < len(self._gpus):
            raise pynvml.NVMLError_InvalidArgument()
        return SimpleNamespace(gpu=self._gpus[index])

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self._gpu(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._gpu(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetPciInfo(self, handle: Any) -> Any:
        return SimpleNamespace(busId=self._gpu(handle, "nvmlDeviceGetPciInfo").bus_id)

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: Any = None) -> Any:
        gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(total=gpu.total, free=gpu.free, used=gpu.total - gpu.free)

    def nvmlDeviceGetCudaComputeCapability(self, handle: Any) -> tuple[int, int]:
        return self._gpu(handle, "nvmlDeviceGetCudaComputeCapability").capability

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: Any) -> int:
        return self._gpu(handle, "nvmlDeviceGetCurrPcieLinkGeneration").pcie[0]

    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle: Any) -> int:
        return self._gpu(handle, "nvmlDeviceGetMaxPcieLinkGeneration").pcie[1]

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: Any) -> int:
        return self._gpu(handle, "nvmlDeviceGetCurrPcieLinkWidth").pcie[2]

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle: Any) -> int:
        return self._gpu(handle, "nvmlDeviceGetMaxPcieLinkWidth").pcie[3]

    def nvmlDeviceGetNvLinkState(self, device: Any, link: int) -> int:
        gpu = self._gpu(device, "nvmlDeviceGetNvLinkState")
        if link >= len(gpu.nvlinks):
            raise pynvml.NVMLError_NotSupported()
        return gpu.nvlinks[link]

    def nvmlDeviceGetPowerManagementLimit(self, handle: Any) -> int:
        return self._gpu(handle, "nvmlDeviceGetPowerManagementLimit").power_mw

    def nvmlDeviceGetMaxClockInfo(self, handle: Any, type: int) -> int:
        if type != pynvml.NVML_CLOCK_SM:
            raise pynvml.NVMLError_InvalidArgument()
        return self._gpu(handle, "nvmlDeviceGetMaxClockInfo").sm_clock_mhz
