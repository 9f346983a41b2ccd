"""Vendi score (Friedman & Dieng 2023) with the linear kernel on L2-normalised rows.

VS = exp(−Σ λ_i log λ_i) over the positive eigenvalues of K/n, K = X Xᵀ (cosine similarities). The non-zero
eigenvalues of X Xᵀ/n equal those of Xᵀ X/n, so the smaller of the two (n×n or D×D) is decomposed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dgm_eval.metrics.checks import FeatureError, as_features


def vendi(x: Any, *, device: str | torch.device | None = None) -> float:
    """Vendi score of one set: the effective number of distinct samples, between 1 and min(N, D).

    Args:
        x: ``(N, D)`` features. Zero rows stay zero (as scikit-learn's ``normalize``).
        device: where to compute.

    Returns:
        The score (1 for identical rows, N for orthogonal rows).

    Raises:
        FeatureError: bad shape or NaN/inf.

    Example:
        >>> round(vendi(np.eye(3)), 10)
        3.0
    """
    t = as_features(x, "x", device=device, min_rows=1)
    norms = t.norm(dim=1, keepdim=True)
    t = t / torch.where(norms > 0, norms, torch.ones_like(norms))
    n = t.shape[0]
    gram = (t @ t.T) if n <= t.shape[1] else (t.T @ t)
    evals = torch.linalg.eigvalsh(gram / n)
    evals = evals[evals > 0]
    return float(torch.exp(-(evals * evals.log()).sum()))


def vendi_per_class(x: Any, labels: Any, *, device: str | torch.device | None = None) -> dict[str, float]:
    """Vendi score of each class (rows sharing a label); flat sets (one label) give one class, never NaN.

    Args:
        x: ``(N, D)`` features. labels: ``(N,)`` class labels (any hashable values).

    Returns:
        ``{str(label): score}`` in sorted label order.

    Raises:
        FeatureError: labels do not match the rows.
    """
    t = as_features(x, "x", device=device)
    lab = np.asarray(labels)
    if lab.shape != (t.shape[0],):
        raise FeatureError(f"labels: expected shape ({t.shape[0]},), got {lab.shape}")
    out = {}
    for value in sorted(set(lab.tolist()), key=lambda v: (str(type(v)), v)):
        rows = torch.from_numpy(np.flatnonzero(lab == value)).to(t.device)
        out[str(value)] = vendi(t[rows])
    return out
