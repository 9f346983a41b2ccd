"""Helpers the method-comparison experiments share: summaries over seeds and predictive moments of samples."""

from __future__ import annotations

import math

import torch

__all__ = ["mean_std", "summarise_seeds"]


def mean_std(values: list[float]) -> dict[str, float]:
    """``{"mean", "std", "n"}`` of a list (population std with n - 1; 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n}


def summarise_seeds(per_seed: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """``per_seed[s][method][metric]`` → ``{method: {metric: {"mean", "std", "n"}}}``."""
    methods = per_seed[0].keys()
    return {
        m: {
            k: mean_std([run[m][k] for run in per_seed]) for k in per_seed[0][m] if isinstance(per_seed[0][m][k], float)
        }
        for m in methods
    }


def mixture_mean_sd(means: torch.Tensor, variances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and sd of the uniform mixture of ``(S, N)`` Gaussians (law of total variance)."""
    mu = means.mean(0)
    return mu, ((variances + means**2).mean(0) - mu**2).clamp_min(0).sqrt()
