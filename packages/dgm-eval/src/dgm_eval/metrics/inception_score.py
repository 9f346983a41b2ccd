"""Inception score (Salimans et al. 2016) from class probabilities.

IS = exp(E_x KL(p(y|x) ‖ p(y))), computed on ``splits`` equal parts of a seeded permutation of the samples
(RandomState(2020) as the public code); mean and std over the parts. Our pipeline computes it on each generated
set (the public code computes it on the wrong set).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dgm_eval.metrics.checks import FeatureError, as_features
from dgm_eval.metrics.defaults import IS_SPLITS


def inception_score(probs: Any, *, splits: int = IS_SPLITS, seed: int = 2020) -> tuple[float, float]:
    """Inception score of class probabilities.

    Args:
        probs: ``(N, C)`` rows of class probabilities (softmax outputs; each row sums to 1), N >= splits.
        splits: number of equal parts (N // splits rows each; the remainder is dropped, as the public code).
        seed: seed of the ``np.random.RandomState`` permutation.

    Returns:
        ``(mean, std)`` over the parts.

    Raises:
        FeatureError: not 2-D, negative entries, rows not summing to 1, fewer rows than splits.

    Example:
        >>> import numpy as np
        >>> round(inception_score(np.eye(4)[np.arange(40) % 4], splits=1)[0], 6)  # balanced one-hot: C
        4.0
    """
    p = as_features(probs, "probs", min_rows=max(1, splits))
    if splits < 1:
        raise FeatureError(f"splits must be >= 1, got {splits}")
    if bool((p < 0).any()) or not torch.allclose(p.sum(dim=1), torch.ones_like(p[:, 0]), atol=1e-3):
        raise FeatureError("probs: expected rows of probabilities (non-negative, summing to 1); pass softmax outputs")
    n = int(p.shape[0])
    order = torch.from_numpy(np.random.RandomState(seed).permutation(n)).to(p.device)
    p = p[order]
    part = n // splits
    scores = []
    for k in range(splits):
        chunk = p[k * part : (k + 1) * part]
        marginal = chunk.mean(dim=0, keepdim=True)
        kl = torch.special.xlogy(chunk, chunk) - torch.special.xlogy(chunk, marginal.expand_as(chunk))
        scores.append(float(torch.exp(kl.sum(dim=1).mean())))
    arr = np.asarray(scores)
    return float(arr.mean()), float(arr.std())
