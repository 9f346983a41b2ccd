"""Input checks shared by every metric: anything array-like becomes a float64 ``(N, D)`` torch tensor.

Errors are :class:`FeatureError`, a :class:`~sixlab_shared.UserError` (one line on the CLI) that is also a
``ValueError`` for library callers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sixlab_shared import UserError


class FeatureError(UserError, ValueError):
    """Features that a metric cannot use: wrong shape, too few rows, NaN/inf, mismatched dimensions."""


def resolve_device(x: Any, device: str | torch.device | None) -> torch.device:
    """The device a metric runs on: ``device`` if given, else the device of ``x`` if it is a tensor, else CPU."""
    if device is not None:
        return torch.device(device)
    if isinstance(x, torch.Tensor):
        return x.device
    return torch.device("cpu")


def as_features(x: Any, name: str, *, device: str | torch.device | None = None, min_rows: int = 1) -> torch.Tensor:
    """Convert ``x`` (numpy array, torch tensor or nested list) to a float64 ``(N, D)`` tensor and check it.

    Args:
        x: features, shape ``(N, D)``.
        name: the argument's name, used in error messages.
        device: where the tensor goes; default: where ``x`` already is (CPU for numpy).
        min_rows: the fewest rows the metric needs.

    Returns:
        ``(N, D)`` float64 tensor on ``device``.

    Raises:
        FeatureError: ``x`` is not 2-D, has fewer than ``min_rows`` rows or no columns, or holds NaN/inf.
    """
    target = resolve_device(x, device)
    if isinstance(x, torch.Tensor):
        t = x.detach().to(device=target, dtype=torch.float64)
    else:
        arr = np.asarray(x)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise FeatureError(f"{name}: expected a numeric array of shape (N, D), got dtype {arr.dtype}")
        t = torch.as_tensor(arr.astype(np.float64, copy=False), device=target)
    if t.ndim != 2:
        raise FeatureError(f"{name}: expected features of shape (N, D), got shape {tuple(t.shape)}")
    if t.shape[1] == 0:
        raise FeatureError(f"{name}: features have no columns (shape {tuple(t.shape)})")
    if t.shape[0] < min_rows:
        raise FeatureError(f"{name}: needs at least {min_rows} samples, got {t.shape[0]}")
    # one reduction first (a sum is NaN/inf when any entry is, and costs no N×D boolean temporary); the full
    # element-wise check only runs when the sum is not finite (bad entries, or a sum overflowing float64)
    if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).any(dim=1).sum())
        raise FeatureError(f"{name}: {bad} of {t.shape[0]} feature rows hold NaN or inf; fix or drop them")
    return t


def check_same_dim(**named: torch.Tensor) -> None:
    """Raise :class:`FeatureError` unless every tensor has the same number of columns."""
    dims = {name: int(t.shape[1]) for name, t in named.items()}
    if len(set(dims.values())) > 1:
        listing = ", ".join(f"{name} has D={d}" for name, d in dims.items())
        raise FeatureError(f"feature dimensions differ ({listing}); use the same encoder for every set")
