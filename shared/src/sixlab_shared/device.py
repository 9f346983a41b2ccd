"""Device selection, autocast dtype, TF32 and moving nested batches to a device."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any

import torch

from sixlab_shared.errors import UserError

logger = logging.getLogger(__name__)

#: Environment variable that overrides the automatic device choice (an explicit argument still wins).
DEVICE_ENV_VAR = "SIXLAB_DEVICE"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Pick the device to run on.

    Order: the ``device`` argument, then the ``SIXLAB_DEVICE`` environment variable, then the best available
    (``cuda`` > ``mps`` > ``cpu``). An explicit request for a device that is not available is an error, never a
    silent fallback.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a ``torch.device``, or ``None`` for automatic.

    Returns:
        The chosen ``torch.device``.

    Raises:
        UserError: the name is not a device, or the requested device is not available on this machine.
    """
    requested = device if device is not None else os.environ.get(DEVICE_ENV_VAR) or None
    if requested is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(requested)
    except (RuntimeError, TypeError) as err:
        source = "--device" if device is not None else DEVICE_ENV_VAR
        raise UserError(f"{source}={requested!r} is not a device; use cpu, cuda, cuda:N or mps") from err
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {requested!r} requested but CUDA is not available here; use --device cpu")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise UserError(f"device {requested!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif chosen.type == "mps" and not _mps_available():
        raise UserError(f"device {requested!r} requested but MPS is not available here; use --device cpu")
    elif chosen.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"device {requested!r} is not supported; use cpu, cuda, cuda:N or mps")
    return chosen


def choose_autocast_dtype(device_type: str, *, bf16_supported: bool) -> torch.dtype:
    """The autocast dtype rule, as a pure function of the device's capabilities.

    ``cuda``: bfloat16 where the GPU supports it, else float16. ``mps``: float16. ``cpu`` (and anything else):
    float32, meaning "no mixed precision": CPU autocast is slower than float32 for the small models we run there.

    Args:
        device_type: ``torch.device.type`` (``"cuda"``, ``"mps"``, ``"cpu"``).
        bf16_supported: whether the device computes in bfloat16 natively.

    Returns:
        ``torch.bfloat16``, ``torch.float16`` or ``torch.float32``.
    """
    if device_type == "cuda":
        return torch.bfloat16 if bf16_supported else torch.float16
    if device_type == "mps":
        return torch.float16
    return torch.float32


def autocast_dtype(device: str | torch.device) -> torch.dtype:
    """The mixed-precision dtype that fits ``device`` (see :func:`choose_autocast_dtype`)."""
    device = torch.device(device)
    bf16 = device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return choose_autocast_dtype(device.type, bf16_supported=bf16)


def set_tf32(enabled: bool) -> None:
    """Allow (or forbid) TensorFloat-32 matrix products and convolutions on Ampere+ GPUs.

    TF32 is faster but has a 10-bit mantissa; metrics that must match float32/float64 references keep it off.
    """
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def move_to_device(batch: Any, device: str | torch.device, *, non_blocking: bool = False) -> Any:
    """Move every tensor inside a nested batch to ``device``; other leaves are returned unchanged.

    Handles mappings (type kept where it can be rebuilt from a dict), lists, tuples, named tuples and dataclass
    instances.

    Example:
        >>> batch = {"x": torch.zeros(2), "meta": ["a", (torch.ones(1), 3)]}
        >>> moved = move_to_device(batch, "cpu")
        >>> moved["meta"][1][1], moved["x"].device.type
        (3, 'cpu')
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        moved = {k: move_to_device(v, device, non_blocking=non_blocking) for k, v in batch.items()}
        try:
            return type(batch)(moved)
        except TypeError:
            return moved
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # named tuple
        return type(batch)(*(move_to_device(v, device, non_blocking=non_blocking) for v in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(move_to_device(v, device, non_blocking=non_blocking) for v in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        changes = {
            f.name: move_to_device(getattr(batch, f.name), device, non_blocking=non_blocking)
            for f in dataclasses.fields(batch)
            if f.init
        }
        return dataclasses.replace(batch, **changes)
    return batch


def process_rank() -> int:
    """This process's global rank under torchrun/accelerate (``RANK``), 0 when not distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """True in the process that writes outputs (rank 0, or the only process)."""
    return process_rank() == 0
