"""FD∞ (Chong & Forsyth 2020): FD extrapolated to infinitely many generated samples.

FD of N generated samples is biased by about b/N; fitting FD_N = a + b/N over several N and reading the
intercept a removes the bias. Subsets are drawn with the given seed (the public code's draws are unseeded).
When N_G <= D every subset's FD comes from Gram matrices computed once (:class:`~dgm_eval.metrics.fd_gram.GramFD`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dgm_eval.metrics.checks import FeatureError, as_features
from dgm_eval.metrics.fd import _is_stats_like, _SqrtFactor, as_statistics, fd_from_statistics, feature_statistics
from dgm_eval.metrics.fd_gram import GramFD


def fit_fd_infinity(sample_sizes: Any, fds: Any) -> float:
    """Least-squares line FD = a + b/N through the points; returns the intercept a (FD at N = ∞).

    Example:
        >>> round(fit_fd_infinity([100, 200, 400], [3 + 50 / 100, 3 + 50 / 200, 3 + 50 / 400]), 10)
        3.0
    """
    ns = np.asarray(sample_sizes, dtype=np.float64)
    design = np.stack([np.ones_like(ns), 1.0 / ns], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.asarray(fds, dtype=np.float64), rcond=None)
    return float(coef[0])


def fd_infinity_sizes(n_fake: int, *, num_points: int = 15, max_start: int = 5000) -> np.ndarray:
    """The subset sizes: ``num_points`` integers evenly spaced from ``min(max_start, max(N/10, 2))`` to N."""
    start = min(max_start, max(n_fake // 10, 2))
    return np.linspace(start, n_fake, num_points).astype(np.int64)


def fd_infinity(
    real: Any,
    fake: Any,
    *,
    seed: int = 0,
    num_points: int = 15,
    device: str | torch.device | None = None,
) -> float:
    """FD∞: FD of ``real`` against subsets of ``fake`` of growing size, extrapolated to N → ∞.

    Args:
        real: ``(N_R, D)`` features (statistics computed once on all of them), or saved statistics (as
            :func:`~dgm_eval.metrics.frechet_distance` takes).
        fake: ``(N_G, D)`` features, ``N_G >= 4``.
        seed: seeds the draws of the subsets (without replacement).
        num_points: how many subset sizes (default 15, as Chong & Forsyth).
        device: where to compute; default where ``real`` is.

    Returns:
        The intercept of the least-squares fit of FD against 1/N.

    Raises:
        FeatureError: bad shapes, NaN/inf, too few samples, mismatched dimensions.
    """
    stats_r = as_statistics(real, "real", device=device)
    g = as_features(fake, "fake", device=stats_r.mean.device, min_rows=4)
    if g.shape[1] != stats_r.dim:
        raise FeatureError(f"feature dimensions differ (real has D={stats_r.dim}, fake has D={g.shape[1]})")
    sizes = fd_infinity_sizes(int(g.shape[0]), num_points=num_points)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    draws = [torch.randperm(g.shape[0], generator=gen)[: int(n)].to(g.device) for n in sizes]
    if g.shape[0] <= g.shape[1]:  # N_G <= D: every subset through one set of Gram matrices, no O(D³) per subset
        rows_r = None if _is_stats_like(real) else as_features(real, "real", device=g.device)
        ref = rows_r if rows_r is not None and rows_r.shape[0] <= g.shape[1] else (stats_r.mean, stats_r.cov)
        gram = GramFD(ref, g)
        fds = [gram.fd(idx) for idx in draws]
    else:
        factor = _SqrtFactor(stats_r.cov)
        fds = [fd_from_statistics(stats_r, feature_statistics(g[idx]), factor=factor) for idx in draws]
    return fit_fd_infinity(sizes, fds)
