"""Approximate sliced Wasserstein distance, ASW (Nadjahi et al. 2021): a closed form under a Gaussian approximation.

ASW = √(‖μ_R − μ_G‖²/D + (√(m₂(R_c)/D) − √(m₂(G_c)/D))²), where m₂ is the mean squared norm of the centred set.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dgm_eval.metrics.checks import as_features, check_same_dim


def sw_approx(real: Any, fake: Any, *, device: str | torch.device | None = None) -> float:
    """Approximate sliced Wasserstein-2 distance between two feature sets.

    Args:
        real: ``(N, D)`` features. fake: ``(M, D)`` features.
        device: where to compute.

    Returns:
        ASW >= 0 (0 for identical sets; ‖c‖/√D for a set and its translate by c).

    Raises:
        FeatureError: bad shapes, NaN/inf, mismatched dimensions.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(20, 4))
        >>> round(sw_approx(x, x + 2.0), 10)
        2.0
    """
    r = as_features(real, "real", device=device)
    g = as_features(fake, "fake", device=r.device)
    check_same_dim(real=r, fake=g)
    dim = r.shape[1]
    mu_r, mu_g = r.mean(dim=0), g.mean(dim=0)
    m2_r = (r - mu_r).square().sum(dim=1).mean()
    m2_g = (g - mu_g).square().sum(dim=1).mean()
    mean_term = (mu_r - mu_g).square().sum() / dim
    spread_term = (torch.sqrt(m2_r / dim) - torch.sqrt(m2_g / dim)).square()
    return math.sqrt(float(mean_term + spread_term))
