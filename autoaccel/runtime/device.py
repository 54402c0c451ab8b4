"""Where training runs: the ``device`` knob decided, and a model and optimizer put there.

``choose_device`` is the one rule, for ``prepare()``, ``advise()`` and the tuner alike:

- ``cpu`` / ``cuda`` / ``cuda:N`` in the config: there (a GPU the machine lacks is a
  ``ConfigError`` naming the fix; under torchrun, ``cuda`` is this process's own GPU);
- ``auto``: a model the user's code put on a GPU stays there (they placed it); a model left
  on the CPU goes to the GPU when torch can use one, else it stays on the CPU.

A model on the CPU is taken as left there, since that is where PyTorch creates it; a user
who wants the CPU on a GPU machine says ``device: cpu``.

``place`` moves the model and its optimizer's state (momentum buffers, Adam moments) to the
chosen device before anything wraps them; ``apply_optimizer_impl`` switches the optimizer to
torch's fused or foreach implementation where the optimizer has one.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from autoaccel.config import OPTIMIZER_IMPLS, check_device_spelling
from autoaccel.errors import ConfigError

__all__ = [
    "DeviceChoice",
    "apply_optimizer_impl",
    "choose_device",
    "cuda_count",
    "optimizer_impls",
    "place",
]


@dataclass(frozen=True)
class DeviceChoice:
    """The device a run trains on and why, in words a user reads."""

    device: torch.device
    reason: str
    moved: bool  # the model is not on this device yet


def choose_device(
    requested: str,
    model_at: torch.device,
    *,
    cuda_count: int,
    local_rank: int | None = None,
) -> DeviceChoice:
    """Decide where a run trains.

    Args:
        requested: The config's ``device``: auto, cpu, cuda or cuda:N.
        model_at: Where the user's code left the model.
        cuda_count: GPUs torch can use here (``torch.cuda.device_count()`` when
            ``torch.cuda.is_available()``, else 0).
        local_rank: This process's GPU under torchrun (``LOCAL_RANK``), else None.

    Raises:
        ConfigError: the config names a GPU this machine does not have.

    Example:
        >>> choose_device("auto", torch.device("cpu"), cuda_count=1).device
        device(type='cuda', index=0)
        >>> choose_device("auto", torch.device("cpu"), cuda_count=0).reason
        'no GPU torch can use here: training stays on the CPU'
    """
    problem = check_device_spelling(requested)
    if problem:
        raise ConfigError([problem])
    if requested == "cpu":
        cpu = torch.device("cpu")
        return DeviceChoice(cpu, "the config asks for the CPU", model_at != cpu)
    if requested == "auto":
        if model_at.type == "cuda" and local_rank is not None:  # torchrun: one GPU each
            device = _gpu(local_rank, cuda_count, None)
            reason = f"your code placed the model on a GPU: this process trains on {device}"
            return DeviceChoice(device, reason, model_at != device)
        if model_at.type != "cpu":
            return DeviceChoice(model_at, f"your code placed the model on {model_at}: kept", False)
        if cuda_count == 0:
            reason = "no GPU torch can use here: training stays on the CPU"
            return DeviceChoice(model_at, reason, False)
        device = _gpu(None, cuda_count, local_rank)
        return DeviceChoice(
            device, f"a GPU is usable here and the model was left on the CPU: {device}", True
        )
    index = int(requested.split(":")[1]) if ":" in requested else None
    device = _gpu(index, cuda_count, local_rank)
    return DeviceChoice(device, f"the config asks for {requested}", model_at != device)


def _gpu(index: int | None, cuda_count: int, local_rank: int | None) -> torch.device:
    """GPU ``index`` (this process's own under torchrun when not named), checked."""
    if cuda_count == 0:
        raise ConfigError(
            [
                "device: the config asks for a CUDA GPU, but torch can use none here "
                "(torch.cuda.is_available() is False); set device: auto or cpu"
            ]
        )
    chosen = index if index is not None else (local_rank or 0)
    if chosen >= cuda_count:
        raise ConfigError(
            [
                f"device: cuda:{chosen} asked for, but torch sees {cuda_count} GPU"
                f"{'s' if cuda_count > 1 else ''} here (cuda:0..cuda:{cuda_count - 1}); "
                "name one of those, or set device: auto"
            ]
        )
    return torch.device("cuda", chosen)


def cuda_count() -> int:
    """GPUs torch can use here (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def place(model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Move ``model`` and its optimizer's state to ``device``, in place.

    The optimizer keeps stepping the model's parameters, also where ``Module.to`` replaces
    the parameter objects (it does for some devices); its per-parameter state (momentum,
    moments) follows them, except the scalar step counts torch keeps on the CPU.

    Example:
        >>> model = nn.Linear(2, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> model(torch.ones(1, 2)).sum().backward(); opt.step()
        >>> place(model, opt, torch.device("meta"))
        >>> buffer = opt.state[model.weight]["momentum_buffer"]
        >>> stepped = opt.param_groups[0]["params"][0]
        >>> model.weight.device.type, buffer.device.type, stepped is model.weight
        ('meta', 'meta', True)
    """
    before = list(model.parameters())
    model.to(device)
    swapped = {id(b): a for b, a in zip(before, model.parameters(), strict=True) if b is not a}
    for group in optimizer.param_groups:
        group["params"] = [swapped.get(id(p), p) for p in group["params"]]
    moved = {
        swapped.get(id(param), param): {
            key: value.to(device) if _follows(key, value) else value for key, value in state.items()
        }
        for param, state in optimizer.state.items()
    }
    optimizer.state.clear()
    optimizer.state.update(moved)


def _follows(key: str, value: object) -> bool:
    """Whether an optimizer state entry moves with its parameter (not a scalar step)."""
    return isinstance(value, torch.Tensor) and (key != "step" or value.dim() > 0)


def optimizer_impls(optimizer: torch.optim.Optimizer | type) -> tuple[str, ...]:
    """The implementations torch has for this optimizer: always ``default``, and
    ``foreach``/``fused`` where its constructor takes them.

    Example:
        >>> optimizer_impls(torch.optim.AdamW), optimizer_impls(torch.optim.LBFGS)
        (('default', 'foreach', 'fused'), ('default',))
    """
    kind = optimizer if isinstance(optimizer, type) else type(optimizer)
    taken = inspect.signature(kind).parameters
    return ("default", *(impl for impl in OPTIMIZER_IMPLS[1:] if impl in taken))


def apply_optimizer_impl(optimizer: torch.optim.Optimizer, impl: str) -> str | None:
    """Switch every param group to torch's ``foreach`` or ``fused`` implementation.

    Returns:
        None when applied (or ``default``, which changes nothing), else why not, in words.

    Example:
        >>> model = nn.Linear(2, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> apply_optimizer_impl(opt, "foreach"), opt.param_groups[0]["foreach"]
        (None, True)
    """
    if impl == "default":
        return None
    name = type(optimizer).__name__
    if impl not in optimizer_impls(optimizer):
        return f"optimizer_impl: {name} has no {impl} implementation in torch; the default runs"
    other = "foreach" if impl == "fused" else "fused"
    for group in optimizer.param_groups:
        group[impl] = True
        if other in group:
            group[other] = False if other == "fused" else None
    if impl == "fused":  # GradScaler then hands the scale to the fused step itself
        optimizer._step_supports_amp_scaling = True  # type: ignore[attr-defined]
    return None
