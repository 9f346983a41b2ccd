"""Per-member likelihoods, and the task read from the targets (integer classes or float regression targets).

Classification members output ``(N, K)`` logits; regression members output ``(N, 2)`` (mean, raw variance mapped
by :func:`~eb_ensembles.models.gaussian_head`), or ``(N, 1)`` means when the noise standard deviation is fixed
(``noise_std``, the homoscedastic model the Bayesian baselines and the linear-Gaussian tests use).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.models import MIN_VARIANCE, gaussian_head

__all__ = [
    "TASKS",
    "check_output_width",
    "member_log_likelihood",
    "member_loss",
    "regression_gaussian",
    "stacked_loss_and_output_grad",
    "task_of",
]

TASKS = ("classification", "regression")


def task_of(y: torch.Tensor) -> str:
    """``"classification"`` for integer targets, ``"regression"`` for floating-point targets.

    Example:
        >>> task_of(torch.tensor([0, 2, 1])), task_of(torch.tensor([0.5, -1.0]))
        ('classification', 'regression')
    """
    if not isinstance(y, torch.Tensor):
        raise InvalidInputError(f"targets must be a torch.Tensor, got {type(y).__name__}")
    if y.dtype == torch.bool:
        raise InvalidInputError("targets must be integer classes or float values, got dtype torch.bool")
    return "regression" if y.dtype.is_floating_point else "classification"


def regression_gaussian(output: torch.Tensor, noise_std: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of a regression output: ``(..., 2)`` heteroscedastic, or ``(..., 1)`` with fixed noise."""
    if noise_std is None:
        return gaussian_head(output)
    if output.shape[-1] != 1:
        raise InvalidInputError(
            f"with a fixed noise_std the regression network must output 1 value (the mean), got {output.shape[-1]}"
        )
    mean = output[..., 0]
    return mean, torch.full_like(mean, noise_std**2)


def member_log_likelihood(
    task: str, output: torch.Tensor, target: torch.Tensor, noise_std: float | None = None
) -> torch.Tensor:
    """Per-point log-likelihood ``log p(y_i | x_i, θ)``: ``(N,)`` from outputs ``(N, K)``, ``(N, 2)`` or ``(N, 1)``.

    Regression includes the ``½ log 2π`` constant (nats).
    """
    if task == "classification":
        return -nn.functional.cross_entropy(output, target, reduction="none")
    mean, var = regression_gaussian(output, noise_std)
    return -0.5 * (torch.log(2 * math.pi * var) + (target - mean) ** 2 / var)


def member_loss(task: str, output: torch.Tensor, target: torch.Tensor, noise_std: float | None = None) -> torch.Tensor:
    """Mean negative log-likelihood of one member on a batch (cross-entropy, or Gaussian NLL incl. ½log 2π)."""
    return -member_log_likelihood(task, output, target, noise_std).mean()


def stacked_loss_and_output_grad(
    task: str, h: torch.Tensor, yb: torch.Tensor, noise_std: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member mean NLL and its gradient in the outputs, in closed form (no autograd graph).

    Args:
        task: ``"classification"`` or ``"regression"``.
        h: ``(T, B, O)`` outputs of T members on their minibatches of B points (detached).
        yb: ``(T, B)`` targets (class indices, or floats).
        noise_std: fixed regression noise σ (``O = 1``), or None for a mean/variance head (``O = 2``).

    Returns:
        ``losses (T,)``, the same values as :func:`member_loss` per member, and ``g (T, B, O)`` = ∂ losses.sum() / ∂h:
        ``(softmax − onehot) / B`` for classification; ``−(y − μ)/(σ² B)`` on the mean; and on a raw variance
        ``½(1/v − (y − μ)²/v²) · softplus'(raw) / B``. The log-softmax is written out: aten's ``log_softmax`` on a
        short class axis is ~3x slower on CPU than these few operations.
    """
    batch = h.shape[1]
    if task == "classification":
        target = yb.unsqueeze(-1).long()
        shifted = h - h.amax(-1, keepdim=True)
        exp = shifted.exp()
        total = exp.sum(-1, keepdim=True)
        losses = (total.log() - shifted.gather(-1, target)).squeeze(-1).mean(1)
        g = exp.div_(total).scatter_add_(-1, target, torch.full_like(target, -1, dtype=h.dtype)).div_(batch)
        return losses, g
    if noise_std is not None:
        var = noise_std**2
        resid = yb - h[..., 0]
        losses = (0.5 * (math.log(2 * math.pi * var) + resid**2 / var)).mean(1)
        return losses, (-resid / var / batch).unsqueeze(-1)
    mean, raw = h[..., 0], h[..., 1]
    var = nn.functional.softplus(raw) + MIN_VARIANCE
    resid = yb - mean
    losses = (0.5 * (torch.log(2 * math.pi * var) + resid**2 / var)).mean(1)
    g_mean = -resid / var / batch
    g_var = 0.5 * (1 / var - resid**2 / var**2) / batch
    g_raw = torch.ops.aten.softplus_backward(g_var, raw, 1.0, 20.0)
    return losses, torch.stack([g_mean, g_raw], -1)


def check_output_width(task: str, width: int, num_classes: int | None, noise_std: float | None) -> None:
    """Raise unless a network's output width fits the task (K logits; 2 or, with fixed noise, 1 for regression)."""
    if task == "classification":
        if num_classes is not None and width != num_classes:
            raise InvalidInputError(f"the classifier outputs {width} logits but the labels have {num_classes} classes")
        return
    need = 1 if noise_std is not None else 2
    if width != need:
        what = "1 value (the mean; noise_std is fixed)" if need == 1 else "2 values (mean, raw variance)"
        raise InvalidInputError(f"a regression network must output {what}, got {width}")
