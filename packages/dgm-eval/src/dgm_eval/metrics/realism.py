"""Realism score per generated sample (Kynkäänniemi et al. 2019), as the public code computes it with prdc.

realism(g) = max over reals r whose k-NN radius is below the median radius of radius(r) / d(r, g);
values > 1 mean g lies inside some (small) real ball. Computed in float64 blocks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dgm_eval.metrics.checks import as_features, check_same_dim
from dgm_eval.metrics.defaults import NEAREST_K
from dgm_eval.metrics.neighbours import DEFAULT_BLOCK_SIZE, kth_neighbour_radii


def realism(
    real: Any,
    fake: Any,
    *,
    nearest_k: int = NEAREST_K,
    block_size: int = DEFAULT_BLOCK_SIZE,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Realism score of each fake sample.

    Args:
        real: ``(N, D)`` features, N > nearest_k. fake: ``(M, D)`` features.
        nearest_k: k of the real radii.
        block_size: rows per distance block.
        device: where to compute.

    Returns:
        ``(M,)`` float64 numpy array (``inf`` where a fake equals a kept real: a copy).

    Raises:
        FeatureError: bad shapes, NaN/inf, too few reals, mismatched dimensions.
    """
    r = as_features(real, "real", device=device, min_rows=nearest_k + 1)
    g = as_features(fake, "fake", device=r.device, min_rows=1)
    check_same_dim(real=r, fake=g)
    radii = kth_neighbour_radii(r, nearest_k, block_size=block_size)
    keep = radii < float(np.median(radii.cpu().numpy()))
    kept, kept_radii = r[keep], radii[keep]
    if kept.shape[0] == 0:  # all radii equal: no ball is below the median
        return np.zeros(g.shape[0])
    center = kept.mean(dim=0)
    kept_c, g_c = kept - center, g - center
    out = torch.empty(g.shape[0], dtype=torch.float64, device=g.device)
    for j0 in range(0, g.shape[0], block_size):
        gb = g_c[j0 : j0 + block_size]
        best = torch.full((gb.shape[0],), -torch.inf, dtype=torch.float64, device=g.device)
        for i0 in range(0, kept.shape[0], block_size):
            kb = kept_c[i0 : i0 + block_size]
            d = torch.cdist(kb, gb, compute_mode="use_mm_for_euclid_dist")
            # the matrix-product distances of (near-)copies are round-off (~1e-7, not 0): recompute those pairs
            # exactly, so that a copy of a kept real scores inf (a memorised sample) rather than a huge number
            close = d < 1e-3 * kept_radii[i0 : i0 + block_size].unsqueeze(1)
            if bool(close.any()):
                ii, jj = close.nonzero(as_tuple=True)
                d[ii, jj] = (kb[ii] - gb[jj]).norm(dim=1)
            ratio = kept_radii[i0 : i0 + block_size].unsqueeze(1) / d
            best = torch.maximum(best, ratio.max(dim=0).values)
        out[j0 : j0 + block_size] = best
    return out.cpu().numpy()
