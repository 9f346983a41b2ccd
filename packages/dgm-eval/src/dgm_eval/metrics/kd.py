"""Kernel distance (KD, the KID of Bińkowski et al. 2018): unbiased polynomial-kernel MMD² over random subsets.

k(x, y) = (xᵀy / D + 1)³; per subset of size m from each set,
MMD² = (Σ_{i≠j} k(x_i, x_j) + Σ_{i≠j} k(y_i, y_j)) / (m(m−1)) − 2 Σ_{i,j} k(x_i, y_j) / m²,
the same estimator as clean-fid and torch-fidelity. The result is the mean and standard deviation over subsets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dgm_eval.metrics.checks import FeatureError, as_features, check_same_dim
from dgm_eval.metrics.defaults import KD_NUM_SUBSETS, KD_SUBSET_SIZE


def polynomial_mmd2(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD² with the cubic polynomial kernel between two ``(m, D)`` float64 sets of equal size."""
    m, dim = int(x.shape[0]), int(x.shape[1])
    k_xx = (x @ x.T / dim + 1.0).pow_(3)
    k_yy = (y @ y.T / dim + 1.0).pow_(3)
    k_xy = (x @ y.T / dim + 1.0).pow_(3)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kd_subsets(
    n_a: int, n_b: int, subset_size: int, num_subsets: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The subset indices :func:`kernel_distance` draws: per subset, m rows of each set without replacement."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, n_a, n_b)
    return [(rng.choice(n_a, m, replace=False), rng.choice(n_b, m, replace=False)) for _ in range(num_subsets)]


def kernel_distance(
    a: Any,
    b: Any,
    *,
    subset_size: int = KD_SUBSET_SIZE,
    num_subsets: int = KD_NUM_SUBSETS,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> tuple[float, float]:
    """KD between two feature sets: mean and std of the unbiased cubic-kernel MMD² over random subsets.

    Args:
        a: ``(N_a, D)`` features. b: ``(N_b, D)`` features.
        subset_size: rows per subset; ``m = min(subset_size, N_a, N_b)`` (as the public code).
        num_subsets: number of subsets.
        seed: seeds the subset draws (see :func:`kd_subsets`).
        device: where to compute.

    Returns:
        ``(mean, std)`` over subsets (std with ddof=0; the public code names it "variance"). KD of two samples of
        one distribution is about 0 and may be negative.

    Raises:
        FeatureError: fewer than 2 rows in a set, bad shapes, NaN/inf, mismatched dimensions, num_subsets < 1.
    """
    x = as_features(a, "a", device=device, min_rows=2)
    y = as_features(b, "b", device=x.device, min_rows=2)
    check_same_dim(a=x, b=y)
    if subset_size < 2 or num_subsets < 1:
        raise FeatureError(f"kd needs subset_size >= 2 and num_subsets >= 1, got {subset_size} and {num_subsets}")
    values = []
    for ia, ib in kd_subsets(int(x.shape[0]), int(y.shape[0]), subset_size, num_subsets, seed):
        values.append(polynomial_mmd2(x[torch.from_numpy(ia).to(x.device)], y[torch.from_numpy(ib).to(x.device)]))
    arr = np.asarray(values)
    return float(arr.mean()), float(arr.std())
