"""Data-copying test C_T (Meehan et al. 2020) and the public code's two variants.

Partition the training set R into cells (KMeans, k = 3, on R projected to 64 PCA components when D > 64). In
each cell, compare the 1-NN distances to R of generated samples G and of held-out test samples T with a
one-sided Mann-Whitney U test, z-scored as (U − (nm/2 − 0.5)) / √(nm(n+m+1)/12). C_T is the average of the
cell z-scores over cells holding more than 20 generated samples' worth (share > 20/m), weighted by each cell's
share of T. C_T ≪ 0: G is closer to R than T is (copying); C_T ≫ 0: underfitting. PCA and KMeans are seeded
(unseeded in the public code); the 1-NN distances use the blocked exact search.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.stats import mannwhitneyu
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from dgm_eval.metrics.checks import FeatureError, as_features, check_same_dim
from dgm_eval.metrics.neighbours import kth_nearest_sq


def _z_u(test_d: np.ndarray, gen_d: np.ndarray) -> float:
    n, m = test_d.shape[0], gen_d.shape[0]
    u = float(mannwhitneyu(gen_d, test_d, alternative="less").statistic)
    return (u - (n * m / 2 - 0.5)) / math.sqrt(n * m * (n + m + 1) / 12)


def _nn_dist(query: torch.Tensor, ref: torch.Tensor) -> np.ndarray:
    vals, _ = kth_nearest_sq(query, ref, 1)
    return vals.sqrt().cpu().numpy()


def ct(
    train: Any,
    test: Any,
    gen: Any,
    *,
    seed: int = 0,
    n_cells: int = 3,
    max_dim: int = 64,
    device: str | torch.device | None = None,
) -> float:
    """C_T statistic of ``gen`` against ``train``, calibrated by ``test``.

    Args:
        train: ``(N_R, D)`` features of the training set. test: ``(N_T, D)`` held-out real features.
        gen: ``(N_G, D)`` generated features.
        seed: seeds PCA and KMeans (n_init = 10).
        n_cells: KMeans clusters (3, as the public code).
        max_dim: PCA components used when D exceeds it (64; fewer when train has fewer samples).
        device: where the nearest-neighbour search runs.

    Returns:
        The C_T z-score average (≪ 0 copying, ≈ 0 fine, ≫ 0 underfitting).

    Raises:
        FeatureError: bad shapes, NaN/inf, mismatched dimensions, too few samples for the cells, or a cell
            without train or test samples.
    """
    r = as_features(train, "train", device=device, min_rows=max(n_cells, 2))
    t = as_features(test, "test", device=r.device, min_rows=2)
    g = as_features(gen, "gen", device=r.device, min_rows=2)
    check_same_dim(train=r, test=t, gen=g)
    r_np, t_np, g_np = (x.cpu().numpy() for x in (r, t, g))
    if r_np.shape[1] > max_dim:
        # PCA cannot have more components than training samples: a small train set keeps all it has.
        pca = PCA(n_components=min(max_dim, r_np.shape[0]), random_state=seed).fit(r_np)
        r_np, t_np, g_np = pca.transform(r_np), pca.transform(t_np), pca.transform(g_np)
    km = KMeans(n_clusters=n_cells, n_init=10, random_state=seed).fit(r_np)
    cells_r, cells_t, cells_g = km.labels_, km.predict(t_np), km.predict(g_np)
    n, m = t_np.shape[0], g_np.shape[0]
    share_t = np.bincount(cells_t, minlength=n_cells) / n
    share_g = np.bincount(cells_g, minlength=n_cells) / m
    used = share_g > 20 / m
    if not used.any():
        raise FeatureError(f"ct: no cell holds more than 20 generated samples (got {m} in all); use more samples")
    dev = r.device
    z = np.zeros(n_cells)
    for c in range(n_cells):
        if not used[c]:
            continue
        in_r, in_t, in_g = (np.flatnonzero(cells == c) for cells in (cells_r, cells_t, cells_g))
        if in_t.size == 0 or in_r.size == 0:
            raise FeatureError(f"ct: cell {c} has no test or no train samples; use more test samples")
        ref = torch.from_numpy(r_np[in_r]).to(dev)
        z[c] = _z_u(
            _nn_dist(torch.from_numpy(t_np[in_t]).to(dev), ref), _nn_dist(torch.from_numpy(g_np[in_g]).to(dev), ref)
        )
    return float(share_t[used] @ z[used] / share_t[used].sum())


def ct_modified(train: Any, test: Any, gen: Any, *, seed: int = 0, device: str | torch.device | None = None) -> float:
    """C_T with train and generated sets swapped (the public code's memorisation variant, ``ct_modified``)."""
    return ct(gen, test, train, seed=seed, device=device)


def ct_test(train: Any, test: Any, gen: Any, *, seed: int = 0, device: str | torch.device | None = None) -> float:
    """C_T with the test set split in halves acting as train and test (mode shrinkage, ``ct_test``).

    ``train`` is accepted for a uniform signature and not used.
    """
    t = as_features(test, "test", device=device, min_rows=4)
    half = (t.shape[0] + 1) // 2  # the first half takes the extra row, as np.array_split
    return ct(t[:half], t[half:], gen, seed=seed, device=device)
