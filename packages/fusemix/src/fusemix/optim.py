"""AdamW with the paper's decay rule and the warm-up + cosine learning-rate schedule (reference §1.7)."""

from __future__ import annotations

import math

import torch
from torch import nn


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weight decay on tensors with ``ndim >= 2`` only (biases, LayerNorms and ``tau`` excluded).

    Example:
        >>> groups = parameter_groups(nn.Linear(3, 2), 0.1)
        >>> [len(g["params"]) for g in groups], [g["weight_decay"] for g in groups]
        ([1, 1], [0.1, 0.0])
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    model: nn.Module, lr: float = 1e-3, weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.999)
) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups` (lr 1e-3, weight decay 0.1, betas (0.9, 0.999) in the paper).

    The fused implementation is used where torch has one for the parameters' device (CPU and CUDA).
    """
    device = next(model.parameters()).device
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, betas=betas, fused=fused or None)


def learning_rate(
    step: int,
    epoch: int,
    *,
    lr: float = 1e-3,
    min_lr: float = 1e-6,
    warmup_start_lr: float = 1e-6,
    warmup_steps: int = 100,
    max_epochs: int = 500,
    total_steps: int | None = None,
) -> float:
    """The learning rate at a global ``step`` in ``epoch``.

    Paper mode (``total_steps=None``): a linear warm-up from ``warmup_start_lr`` to ``lr`` over ``warmup_steps``
    steps, applied inside epoch 0 only; otherwise a cosine over *epochs*, constant within an epoch::

        lr_e = min_lr + (lr - min_lr) * (1 + cos(pi * epoch / max_epochs)) / 2

    Step mode (``total_steps`` given, for short runs whose epochs hold few steps): the same warm-up, then a cosine
    over the steps after it, reaching ``min_lr`` at ``total_steps``.

    Example:
        >>> learning_rate(0, 0), learning_rate(100, 0), round(learning_rate(30000, 250), 7)
        (1e-06, 0.001, 0.0005005)
    """
    if total_steps is None:
        if epoch == 0 and step < warmup_steps:
            return warmup_start_lr + (lr - warmup_start_lr) * step / max(warmup_steps, 1)
        return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * epoch / max(max_epochs, 1)))
    if step < warmup_steps:
        return warmup_start_lr + (lr - warmup_start_lr) * step / max(warmup_steps, 1)
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: torch.optim.Optimizer, value: float) -> None:
    """Set every parameter group's ``lr``."""
    for group in optimizer.param_groups:
        group["lr"] = value
