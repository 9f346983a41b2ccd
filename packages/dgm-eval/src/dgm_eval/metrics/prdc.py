"""Precision, recall, density and coverage (Naeem et al. 2020, the clovaai ``prdc`` algorithm).

Each sample's ball has the radius of its k-th nearest neighbour in its own set. With strict ``<`` throughout:
precision = share of fakes inside some real ball; recall = share of reals inside some fake ball;
density = (1/k)·mean over fakes of the number of real balls containing them; coverage = share of reals whose
nearest fake lies inside their ball. Computed in blocks (:mod:`dgm_eval.metrics.neighbours` for the radii,
:mod:`dgm_eval.metrics.ball_counts` for the counts), so memory is O(N·k + block²) and the values equal the
``prdc`` package's float64 computation exactly.
"""

from __future__ import annotations

from typing import Any

import torch

from dgm_eval.metrics.ball_counts import ball_counts_blocked
from dgm_eval.metrics.checks import FeatureError, as_features, check_same_dim
from dgm_eval.metrics.defaults import NEAREST_K
from dgm_eval.metrics.neighbours import DEFAULT_BLOCK_SIZE, kth_nearest_blocked, prepare


def prdc(
    real: Any,
    fake: Any,
    *,
    nearest_k: int = NEAREST_K,
    block_size: int = DEFAULT_BLOCK_SIZE,
    device: str | torch.device | None = None,
    products: str = "auto",
) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real``.

    Args:
        real: ``(N, D)`` features (numpy or torch), N > nearest_k.
        fake: ``(M, D)`` features, M > nearest_k.
        nearest_k: k of the k-NN radii (5, as the public code; torch-fidelity uses 3).
        block_size: rows per distance block (memory ~ block_size² float32; results do not depend on it).
        device: where to compute; default where ``real`` is.
        products: dtype of the distance products: ``"auto"`` (bfloat16 on CPUs with native bf16 dot products
            and D >= 128 unless a probe finds its error band too wide for these features, else float32),
            ``"float32"`` or ``"bfloat16"``. The values do not depend on it: every
            comparison the rounding could flip is recomputed in float64.

    Returns:
        ``{"precision", "recall", "density", "coverage"}`` as floats.

    Raises:
        FeatureError: a set has <= nearest_k rows, bad shapes, NaN/inf, mismatched dimensions.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(50, 4))
        >>> prdc(x, x, nearest_k=3)["coverage"]
        1.0
    """
    if nearest_k < 1:
        raise FeatureError(f"nearest_k must be >= 1, got {nearest_k}")
    r = as_features(real, "real", device=device, min_rows=nearest_k + 1)
    g = as_features(fake, "fake", device=r.device, min_rows=nearest_k + 1)
    check_same_dim(real=r, fake=g)
    # Both sets prepared once (centred on the real mean, low-precision copies) for the three blocked passes.
    r_blocked, g_blocked = prepare(r, r, g, products=products, probe_k=nearest_k + 1)
    r_radii = kth_nearest_blocked(r_blocked, r_blocked, nearest_k + 1, block_size=block_size)[0].sqrt()
    g_radii = kth_nearest_blocked(g_blocked, g_blocked, nearest_k + 1, block_size=block_size)[0].sqrt()
    counts = ball_counts_blocked(r_blocked, g_blocked, r_radii, g_radii, block_size=block_size)
    return {
        "precision": float((counts.fake_in_real_balls > 0).double().mean()),
        "recall": float(counts.real_in_fake_balls.double().mean()),
        "density": float((1.0 / nearest_k) * counts.fake_in_real_balls.double().mean()),  # as the prdc package
        "coverage": float(counts.real_has_fake.double().mean()),
    }
