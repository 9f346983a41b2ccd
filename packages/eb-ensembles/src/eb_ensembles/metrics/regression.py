"""Regression with Gaussian members ``(M, N)`` means and variances: mixture moments, exact mixture NLL, Gaussian NLL,
RMSE and central-interval coverage (conventions: :mod:`eb_ensembles.metrics`)."""

from __future__ import annotations

import math

import torch

from eb_ensembles.checks import InvalidInputError, check_ndim

__all__ = ["gaussian_mixture_nll", "gaussian_nll", "interval_coverage", "mixture_moments", "regression_metrics", "rmse"]


def _check_gaussians(means: torch.Tensor, variances: torch.Tensor) -> None:
    check_ndim("means", means, 2, "(M, N)")
    if variances.shape != means.shape:
        raise InvalidInputError(f"`variances` {tuple(variances.shape)} must match `means` {tuple(means.shape)}")
    if not bool(torch.isfinite(variances).all()) or not bool((variances > 0).all()):
        raise InvalidInputError(
            f"`variances` must be finite and > 0, got min {float(variances.min()):.4g}; pass variances, not "
            "log-variances or signed values"
        )


def mixture_moments(means: torch.Tensor, variances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the uniform Gaussian mixture: ``μ* = mean μ_m``, ``σ*² = mean(σ_m² + μ_m²) - μ*²``.

    Args:
        means, variances: ``(M, N)`` member means and variances.

    Returns:
        ``(N,)`` mean and ``(N,)`` variance.
    """
    _check_gaussians(means, variances)
    mu = means.mean(0)
    return mu, (variances + means**2).mean(0) - mu**2


def gaussian_nll(mean: torch.Tensor, variance: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean Gaussian NLL ``½ log(2π σ²) + (y-μ)² / (2σ²)`` over ``(N,)`` points, in nats.

    Raises:
        InvalidInputError: shapes differ, or a variance is not a finite positive number (e.g. a standard
            deviation's negative, or a log-variance passed by mistake).
    """
    if not (mean.shape == variance.shape == targets.shape):
        raise InvalidInputError(
            f"`mean` {tuple(mean.shape)}, `variance` {tuple(variance.shape)} and `targets` {tuple(targets.shape)} "
            "must have the same shape"
        )
    if not bool(torch.isfinite(variance).all()) or not bool((variance > 0).all()):
        raise InvalidInputError(
            f"`variance` must be finite and > 0, got min {float(variance.min()):.4g}; pass variances, not "
            "log-variances or signed values"
        )
    value = 0.5 * (torch.log(2 * math.pi * variance) + (targets - mean) ** 2 / variance)
    return float(value.to(torch.float64).mean())


def gaussian_mixture_nll(means: torch.Tensor, variances: torch.Tensor, targets: torch.Tensor) -> float:
    """Exact NLL of the uniform Gaussian mixture: ``-mean_i [logsumexp_m log N(y_i; μ_m, σ_m²) - log M]``."""
    _check_gaussians(means, variances)
    log_dens = -0.5 * (torch.log(2 * math.pi * variances) + (targets[None] - means) ** 2 / variances)
    return float(-(torch.logsumexp(log_dens, 0) - math.log(means.shape[0])).to(torch.float64).mean())


def rmse(mean: torch.Tensor, targets: torch.Tensor) -> float:
    """Root mean squared error of a ``(N,)`` point prediction."""
    return float(((mean - targets) ** 2).to(torch.float64).mean().sqrt())


def interval_coverage(mean: torch.Tensor, variance: torch.Tensor, targets: torch.Tensor, level: float) -> float:
    """PICP: fraction of targets inside the central ``level`` interval of the Gaussian ``N(mean, variance)``."""
    if not 0 < level < 1:
        raise InvalidInputError(f"`level` must be in (0, 1), got {level}")
    z = float(torch.special.ndtri(torch.tensor((1 + level) / 2, dtype=torch.float64)))
    inside = (targets - mean).abs() <= z * variance.sqrt()
    return float(inside.to(torch.float64).mean())


def regression_metrics(means: torch.Tensor, variances: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """RMSE of the mixture mean, exact mixture NLL, moment-matched Gaussian NLL and PICP at 50/90/95 %."""
    mu, var = mixture_moments(means, variances)
    out = {
        "rmse": rmse(mu, targets),
        "nll": gaussian_mixture_nll(means, variances, targets),
        "nll_moment_matched": gaussian_nll(mu, var, targets),
    }
    for level in (0.5, 0.9, 0.95):
        out[f"coverage_{int(level * 100)}"] = interval_coverage(mu, var, targets, level)
    return out
