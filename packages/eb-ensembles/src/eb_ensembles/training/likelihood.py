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
from eb_ensembles.models import gaussian_head

__all__ = ["TASKS", "check_output_width", "member_log_likelihood", "member_loss", "regression_gaussian", "task_of"]

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
