"""``autoaccel probe``: what this machine can do for training."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.table import Table

from autoaccel.cli._common import CommandResult, gib, known

if TYPE_CHECKING:  # torch loads only when the command runs, not for --help
    from autoaccel.probe import HardwareProfile

__all__ = ["EXAMPLE", "SUMMARY", "add_arguments", "probe_tables", "run"]

SUMMARY = "Report the CPU, memory, GPUs, software and precisions here."
EXAMPLE = (
    "autoaccel probe            # readable report\n  autoaccel probe --json     # for machines"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``probe`` takes only the common flags."""


def run(args: argparse.Namespace) -> CommandResult:
    """What this machine can do for training."""
    from autoaccel.probe import probe_system

    profile = probe_system()
    return CommandResult(profile.to_dict(), probe_tables(profile))


def probe_tables(profile: HardwareProfile) -> list[Table]:
    """The probe report as tables: the machine, its GPUs (when there are), its precisions."""
    gpus = [_gpu_table(profile)] if profile.gpus else []
    return [_machine_table(profile), *gpus, _precision_table(profile)]


def _machine_table(profile: HardwareProfile) -> Table:
    cpu = profile.cpu
    system = Table(title="Machine", show_header=False, title_justify="left")
    system.add_column("fact", style="bold")
    system.add_column("value")
    quota = "none" if cpu.quota_cores is None else f"{cpu.quota_cores:g} cores"
    rows = [
        ("CPU", cpu.model),
        ("cores", f"{cpu.logical_cores} logical, {known(cpu.physical_cores)} physical"),
        (
            "usable cores",
            f"{cpu.usable_cores} (affinity {cpu.affinity_cores}, cgroup quota {quota})",
        ),
        ("ISA flags", ", ".join(cpu.flags) or "none of note"),
        ("RAM", f"{gib(cpu.ram_total_bytes)} total, {gib(cpu.ram_available_bytes)} available"),
        ("GPUs", profile.nvml_status if not profile.gpus else f"{len(profile.gpus)} via NVML"),
        (
            "driver",
            f"{known(profile.driver_version)} (CUDA {known(profile.cuda_driver_version)})",
        ),
        ("Python", profile.software.python),
        ("torch", profile.software.torch),
        (
            "CUDA / cuDNN / NCCL",
            f"{known(profile.software.cuda)} / "
            f"{known(profile.software.cudnn)} / "
            f"{known(profile.software.nccl)}",
        ),
        (
            "torch sees",
            f"{profile.software.cuda_device_count} CUDA device(s)"
            + (", bf16 ok" if profile.software.cuda_bf16_supported else ""),
        ),
        (
            "torch.compile",
            ("yes: " if profile.software.compile_available else "no: ")
            + profile.software.compile_reason,
        ),
        ("fingerprint", profile.fingerprint()),
        ("probe time", f"{profile.probe_s:.3f} s"),
    ]
    for fact, value in rows:
        system.add_row(fact, value)
    return system


def _gpu_table(profile: HardwareProfile) -> Table:
    gpus = Table(title="GPUs", title_justify="left")
    for column in (
        "nvml",
        "cuda",
        "name",
        "memory total / free",
        "cc",
        "PCIe gen",
        "PCIe width",
        "NVLink up",
        "power limit",
        "max SM clock",
        "UUID",
    ):
        gpus.add_column(column)
    for g in profile.gpus:
        gpus.add_row(
            str(g.nvml_index),
            "hidden" if g.torch_index is None else f"cuda:{g.torch_index}",
            g.name,
            f"{gib(g.memory_total_bytes)} / {gib(g.memory_free_bytes)}",
            known(g.compute_capability),
            f"{known(g.pcie_gen_current)} of {known(g.pcie_gen_max)}",
            f"x{known(g.pcie_width_current)} of x{known(g.pcie_width_max)}",
            known(g.nvlink_links_up),
            known(g.power_limit_w, " W"),
            known(g.max_sm_clock_mhz, " MHz"),
            g.uuid,
        )
    return gpus


def _precision_table(profile: HardwareProfile) -> Table:
    precisions = Table(title="Precisions", title_justify="left")
    precisions.add_column("precision")
    precisions.add_column("runs here")
    precisions.add_column("why")
    for p in profile.precisions:
        precisions.add_row(p.precision, "yes" if p.supported else "no", p.reason)
    return precisions
