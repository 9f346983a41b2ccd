"""Symmetric InfoNCE with a learnable, clamped temperature (reference §1.6).

The temperature is a raw scalar (not log-scale), initialised at 0.07 and clamped in place to [0.001, 0.5] before
every forward pass; it is excluded from weight decay (see :mod:`fusemix.optim`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

TEMPERATURE_MIN = 1e-3
TEMPERATURE_MAX = 0.5


class Temperature(nn.Module):
    """A learnable scalar ``tau``, clamped in place to ``[min_value, max_value]`` each time it is read.

    Example:
        >>> t = Temperature(0.07)
        >>> with torch.no_grad():
        ...     _ = t.value.fill_(1.0)
        >>> float(t().detach())
        0.5
    """

    def __init__(
        self, init_value: float = 0.07, min_value: float = TEMPERATURE_MIN, max_value: float = TEMPERATURE_MAX
    ) -> None:
        super().__init__()
        if not min_value <= init_value <= max_value:
            raise ValueError(f"init temperature {init_value} outside [{min_value}, {max_value}]")
        self.init_value = float(init_value)
        self.min_value = float(min_value)
        self.max_value = float(max_value)
        self.value = nn.Parameter(torch.tensor(float(init_value)))

    def forward(self) -> torch.Tensor:
        """Clamp the stored value in place, then return it (a 0-d tensor that carries gradients)."""
        with torch.no_grad():
            self.value.clamp_(self.min_value, self.max_value)
        return self.value


def symmetric_infonce(x: torch.Tensor, y: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """Mean of the row-wise and column-wise cross-entropies of ``normalize(x) normalize(y)^T / tau``.

    Row ``i`` of ``x`` and row ``i`` of ``y`` are the positive pair; every other row is a negative.

    Args:
        x: ``(B, D)`` embeddings of one modality (normalised here, so any scale gives the same loss).
        y: ``(B, D)`` embeddings of the other modality.
        temperature: ``tau > 0`` (a tensor to learn it).

    Returns:
        A 0-d tensor.

    Raises:
        ValueError: the shapes differ or are not 2-D.

    Example:
        >>> e = torch.eye(4)
        >>> float(symmetric_infonce(e, e, 0.01)) < 1e-6
        True
    """
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"expected two (B, D) tensors of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    x = F.normalize(x, dim=-1)
    y = F.normalize(y, dim=-1)
    logits = x @ y.T / temperature  # B x B
    targets = torch.arange(x.shape[0], device=x.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
