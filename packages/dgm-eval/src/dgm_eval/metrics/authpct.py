"""Authenticity percentage, AuthPct (Alaa et al. 2022), as the public code defines it, in blocks.

For each generated g: its nearest real j at distance d₁, and d₂ = the distance from j to j's nearest other
real. g is authentic when d₂ < d₁ (it is farther from j than j's own neighbour). AuthPct = 100 · share of
authentic g. The public code holds full N×N matrices (≈10 GB at N = 50k); this holds O(N) plus one block.
"""

from __future__ import annotations

from typing import Any

import torch

from dgm_eval.metrics.checks import as_features, check_same_dim
from dgm_eval.metrics.neighbours import DEFAULT_BLOCK_SIZE, kth_nearest_sq


def authpct(
    real: Any,
    fake: Any,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    device: str | torch.device | None = None,
) -> float:
    """AuthPct of ``fake`` with respect to ``real``, in percent.

    Args:
        real: ``(N, D)`` features, N >= 2. fake: ``(M, D)`` features.
        block_size: rows per distance block.
        device: where to compute.

    Returns:
        Percentage in [0, 100]: 0 when every g copies a real, 100 when every g is far from the reals.

    Raises:
        FeatureError: bad shapes, NaN/inf, fewer than 2 reals, mismatched dimensions.
    """
    r = as_features(real, "real", device=device, min_rows=2)
    g = as_features(fake, "fake", device=r.device, min_rows=1)
    check_same_dim(real=r, fake=g)
    d_real, _ = kth_nearest_sq(r, None, 2, block_size=block_size)  # the 1st is the row itself (distance 0)
    nn_other = d_real.sqrt()
    d_fake, j = kth_nearest_sq(g, r, 1, block_size=block_size)
    authentic = nn_other[j] < d_fake.sqrt()
    return float(100.0 * authentic.double().mean())
