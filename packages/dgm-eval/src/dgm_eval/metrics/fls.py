"""Feature likelihood score FLS and its overfitting variant FLS-POG (Jiralerspong et al. 2023).

A Gaussian KDE is centred on the generated samples with one free log-variance s_j per kernel, fitted by Adam
(lr 0.5, 100 steps, ×0.1 after step 50, s₀ = 0, clamp [−100, 20]) to the negative log-likelihood of a train
split of R; a second KDE is fitted the same way on a disjoint baseline split of R. FLS = 100·exp(−2(NLL_T|G −
NLL_T|base)/D): higher is better. Runs on any device in float64 (the public code is CUDA-only, float32); the
likelihood sums are chunked over data rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from dgm_eval.metrics.checks import as_features, check_same_dim
from dgm_eval.metrics.defaults import REDUCED_N

_ROW_CHUNK = 1024


def _sq_dists(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, y, compute_mode="use_mm_for_euclid_dist").square_()


def _log_kernels(dists: torch.Tensor, log_sigmas: torch.Tensor, dim: int) -> torch.Tensor:
    """log of each kernel's density (with weight 1/M) at each data row: ``(rows, M)``."""
    return -0.5 * dists / log_sigmas.exp() - (dim / 2) * log_sigmas - math.log(dists.shape[1])


def _nll(dists: torch.Tensor, log_sigmas: torch.Tensor, dim: int) -> torch.Tensor:
    total = dists.new_zeros(())
    for s in range(0, dists.shape[0], _ROW_CHUNK):
        total = total - torch.logsumexp(_log_kernels(dists[s : s + _ROW_CHUNK], log_sigmas, dim), dim=1).sum()
    return total / dists.shape[0]


def fit_log_sigmas(data: torch.Tensor, kernels: torch.Tensor, *, steps: int = 100) -> torch.Tensor:
    """Per-kernel log-variances of a Gaussian KDE on ``kernels`` maximising the likelihood of ``data``."""
    with torch.no_grad():
        return _fit(data.detach(), kernels.detach(), steps)


def _fit(data: torch.Tensor, kernels: torch.Tensor, steps: int) -> torch.Tensor:
    dists = _sq_dists(data, kernels)
    n, dim = dists.shape[0], data.shape[1]
    log_sigmas = torch.zeros(kernels.shape[0], dtype=data.dtype, device=data.device)
    # Adam (β = 0.9, 0.999, ε = 1e-8) with the learning rate ×0.1 after step 50, written out as torch.optim.Adam
    # computes it (same operations, same order): torch.optim's first use imports its compiler stack (~10 s on CPU).
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    exp_avg = torch.zeros_like(log_sigmas)
    exp_avg_sq = torch.zeros_like(log_sigmas)
    for step in range(1, steps + 1):
        # Gradient of the mean NLL, chunk by chunk over data rows (memory O(chunk × M) besides the distances):
        # ∂/∂s_j = −(1/N) Σ_i w_ij (½ d_ij e^{−s_j} − D/2), with w_i· the softmax of row i's log-kernels.
        grad = torch.zeros_like(log_sigmas)
        inv_sigma = torch.exp(-log_sigmas)
        for s in range(0, n, _ROW_CHUNK):
            block = dists[s : s + _ROW_CHUNK]
            weights = torch.softmax(_log_kernels(block, log_sigmas, dim), dim=1)
            grad -= (weights * (0.5 * block * inv_sigma - dim / 2)).sum(dim=0)
        grad /= n
        lr = 0.5 if step <= 50 else 0.05
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)
        log_sigmas.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)
        log_sigmas.clamp_(-100, 20)
    return log_sigmas


def _prepare(train: Any, test: Any, gen: Any, seed: int, reduced_n: int, device: Any) -> tuple[torch.Tensor, ...]:
    r = as_features(train, "train", device=device, min_rows=2)
    t = as_features(test, "test", device=r.device, min_rows=1)
    g = as_features(gen, "gen", device=r.device, min_rows=1)
    check_same_dim(train=r, test=t, gen=g)
    n = min(reduced_n, r.shape[0] // 2, t.shape[0], g.shape[0])
    rng = np.random.default_rng(seed)
    perm_r = torch.from_numpy(rng.permutation(r.shape[0])).to(r.device)
    r_train, r_base = r[perm_r[:n]], r[perm_r[n : 2 * n]]
    t = t[torch.from_numpy(rng.choice(t.shape[0], n, replace=False)).to(r.device)]
    g = g[torch.from_numpy(rng.choice(g.shape[0], n, replace=False)).to(r.device)]
    union = torch.cat([r_train, r_base, t, g])
    mean, std = union.mean(dim=0), union.std(dim=0)
    std = torch.where(std > 0, std, torch.ones_like(std))  # constant columns: centred, not divided by 0
    return tuple((x - mean) / std for x in (r_train, r_base, t, g))


def fls(
    train: Any,
    test: Any,
    gen: Any,
    *,
    seed: int = 0,
    reduced_n: int = REDUCED_N,
    device: str | torch.device | None = None,
) -> float:
    """Feature likelihood score of ``gen``: test likelihood of a KDE on ``gen`` against a KDE on real data.

    Args:
        train: ``(N_R, D)`` real training features (split into a train and a baseline half).
        test: ``(N_T, D)`` held-out real features. gen: ``(N_G, D)`` generated features.
        seed: seeds the split and the subsets.
        reduced_n: cap on n = min(reduced_n, N_R // 2, N_T, N_G).
        device: where to compute.

    Returns:
        FLS (100 when ``gen`` is as good as real training data; higher is better).

    Raises:
        FeatureError: bad shapes, NaN/inf, fewer than 2 training samples, mismatched dimensions.
    """
    r_train, r_base, t, g = _prepare(train, test, gen, seed, reduced_n, device)
    dim = r_train.shape[1]
    sigmas_gen = fit_log_sigmas(r_train, g)
    sigmas_base = fit_log_sigmas(r_train, r_base)
    with torch.no_grad():
        nll_gen = float(_nll(_sq_dists(t, g), sigmas_gen, dim))
        nll_base = float(_nll(_sq_dists(t, r_base), sigmas_base, dim))
    return 100.0 * math.exp(-2.0 * (nll_gen - nll_base) / dim)


def fls_overfit(
    train: Any,
    test: Any,
    gen: Any,
    *,
    seed: int = 0,
    reduced_n: int = REDUCED_N,
    device: str | torch.device | None = None,
) -> float:
    """FLS-POG: share of generated kernels more likely under train points than under as many test points, −50.

    Args: as :func:`fls`.

    Returns:
        Score in [−50, 50]: ≈ 0 for a fresh sample, > 0 when ``gen`` sits on training points (overfitting).
    """
    r_train, _, t, g = _prepare(train, test, gen, seed, reduced_n, device)
    dim = r_train.shape[1]
    log_sigmas = fit_log_sigmas(r_train, g)
    size = min(t.shape[0], r_train.shape[0])
    with torch.no_grad():
        ll_train = torch.logsumexp(_log_kernels(_sq_dists(r_train[:size], g), log_sigmas, dim), dim=0)
        ll_test = torch.logsumexp(_log_kernels(_sq_dists(t[:size], g), log_sigmas, dim), dim=0)
    return 100.0 * float((ll_train > ll_test).double().mean()) - 50.0
