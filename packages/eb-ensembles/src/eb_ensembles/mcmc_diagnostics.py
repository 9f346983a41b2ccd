"""Convergence diagnostics of several MCMC chains: split R-hat and effective sample size (BDA3 §11.4-11.5).

Both take ``(C, T)`` (chains × draws) or ``(C, T, Q)`` arrays (Q quantities, each diagnosed on its own).
"""

from __future__ import annotations

import numpy as np
import torch

from eb_ensembles.checks import InvalidInputError

__all__ = ["effective_sample_size", "split_rhat"]


def _as_array(draws: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = draws.detach().cpu().double().numpy() if isinstance(draws, torch.Tensor) else np.asarray(draws, float)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[1] < 4:
        raise InvalidInputError(f"draws must be (chains, draws[, quantities]) with >= 4 draws, got {arr.shape}")
    return arr


def _split(arr: np.ndarray) -> np.ndarray:
    half = arr.shape[1] // 2
    return np.concatenate([arr[:, :half], arr[:, arr.shape[1] - half :]], 0)


def split_rhat(draws: torch.Tensor | np.ndarray) -> np.ndarray:
    """Split R-hat per quantity: ``sqrt(var⁺ / W)`` over the chains cut in halves; ``(Q,)``, ≈ 1 when mixed.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> float(split_rhat(rng.normal(size=(4, 1000)))[0]) < 1.01
        True
    """
    arr = _split(_as_array(draws))
    n = arr.shape[1]
    within = arr.var(1, ddof=1).mean(0)
    between = n * arr.mean(1).var(0, ddof=1)
    var_plus = (n - 1) / n * within + between / n
    return np.sqrt(var_plus / np.maximum(within, 1e-300))


def effective_sample_size(draws: torch.Tensor | np.ndarray) -> np.ndarray:
    """Effective sample size per quantity over all chains (Geyer's initial positive sequence); ``(Q,)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> 3000 < float(effective_sample_size(rng.normal(size=(4, 1000)))[0]) < 5000
        True
    """
    arr = _split(_as_array(draws))
    chains, n, _ = arr.shape
    centred = arr - arr.mean(1, keepdims=True)
    spectrum = np.fft.rfft(centred, n=2 * n, axis=1)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), axis=1)[:, :n] / n  # C x n x Q
    within = arr.var(1, ddof=1).mean(0)
    var_plus = (n - 1) / n * within + arr.mean(1).var(0, ddof=1)
    rho = 1 - (within - acov.mean(0)) / np.maximum(var_plus, 1e-300)  # n x Q
    rho[0] = 1.0
    out = np.empty(arr.shape[2])
    for q in range(arr.shape[2]):
        total, t = 0.0, 0
        while t + 1 < n:
            pair = rho[t, q] + rho[t + 1, q]
            if pair < 0:
                break
            total += pair
            t += 2
        tau = max(-1.0 + 2.0 * total, 1.0 / np.log10(chains * n))
        out[q] = chains * n / tau
    return out
