"""Sample-quality and ODE-error metrics (float64, NumPy/SciPy), written here so the package works without
``dgm-eval``.

- :func:`ode_error`: element-wise MSE between two sets of samples from the same initial noise.
- :func:`frechet_distance`: ‖μ₁−μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^{1/2}) of Gaussian fits to two feature sets.
- :func:`precision_recall`: k-NN manifold precision and recall (Kynkäänniemi et al., 2019).
- :func:`energy_distance`: 2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖ (V-statistic) for the 2-D case.
- :func:`mode_stats`: fraction of samples within 3σ of a mode, and fraction of modes hit.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy import linalg
from scipy.spatial.distance import cdist

logger = logging.getLogger(__name__)

__all__ = ["energy_distance", "frechet_distance", "mode_stats", "ode_error", "precision_recall"]


def _as64(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def ode_error(samples: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean over all elements of ``(samples − reference)²`` (float64); both ``(B, ...)`` from the same x_T.

    Example:
        >>> ode_error(torch.zeros(2, 3), torch.ones(2, 3))
        1.0
    """
    if samples.shape != reference.shape:
        raise ValueError(f"shapes differ: samples {tuple(samples.shape)} vs reference {tuple(reference.shape)}")
    return float(((samples.double() - reference.double()) ** 2).mean().item())


def frechet_distance(features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between Gaussian fits of ``(N, D)`` and ``(M, D)`` features, in float64.

    The matrix square root's small imaginary part (numerical) is dropped; a larger one is logged.
    """
    a, b = _as64(features_a), _as64(features_b)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if np.iscomplexobj(covmean):
        imag = np.abs(covmean.imag).max()
        if imag > 1e-3:
            logger.warning("Frechet distance: sqrtm has imaginary part %.3g (near-singular covariances)", imag)
        covmean = covmean.real
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))


def precision_recall(
    real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, k: int = 3
) -> tuple[float, float]:
    """k-NN precision (fake inside the real manifold) and recall (real inside the fake manifold).

    A point is inside a manifold if it lies within the k-th nearest-neighbour radius of some point of it.
    """
    r, f = _as64(real), _as64(fake)

    def radii(x: np.ndarray) -> np.ndarray:
        d = cdist(x, x)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    r_rad, f_rad = radii(r), radii(f)
    d_fr = cdist(f, r)
    precision = float((d_fr <= r_rad[None, :]).any(axis=1).mean())
    recall = float((d_fr.T <= f_rad[None, :]).any(axis=1).mean())
    return precision, recall


def energy_distance(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Energy distance 2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖ (V-statistic, ≥ 0) between ``(N, D)`` and ``(M, D)``."""
    a, b = _as64(x), _as64(y)
    return float(2 * cdist(a, b).mean() - cdist(a, a).mean() - cdist(b, b).mean())


def mode_stats(
    points: np.ndarray | torch.Tensor, centres: np.ndarray | torch.Tensor, std: float
) -> tuple[float, float]:
    """(mode precision, mode coverage): share of points within 3·std of a centre, share of centres hit."""
    p, c = _as64(points), _as64(centres)
    d = cdist(p, c)
    near = d <= 3 * std
    return float(near.any(axis=1).mean()), float(near.any(axis=0).mean())
