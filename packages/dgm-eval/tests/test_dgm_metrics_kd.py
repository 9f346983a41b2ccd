"""KD against torchmetrics' KID kernel and the clean-fid formula on the same subsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.image.kid import poly_mmd

from dgm_eval.metrics import FeatureError, kernel_distance
from dgm_eval.metrics.kd import kd_subsets


def _clean_fid_formula(x: np.ndarray, y: np.ndarray) -> float:
    # clean-fid's kernel_distance body for one subset (float64 numpy).
    n, m = x.shape[1], x.shape[0]
    a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
    b = (x @ y.T / n + 1) ** 3
    return float(((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m)


def test_kd_equals_torchmetrics_and_clean_fid(feats):
    real, fake = feats
    mean, std = kernel_distance(real, fake, subset_size=100, num_subsets=7, seed=5)
    peers_tm, peers_cf = [], []
    for ia, ib in kd_subsets(real.shape[0], fake.shape[0], 100, 7, 5):
        peers_tm.append(float(poly_mmd(torch.from_numpy(real[ia]), torch.from_numpy(fake[ib]), degree=3, coef=1.0)))
        peers_cf.append(_clean_fid_formula(real[ia], fake[ib]))
    assert mean == pytest.approx(np.mean(peers_tm), rel=1e-10)
    assert mean == pytest.approx(np.mean(peers_cf), rel=1e-10)
    assert std == pytest.approx(np.std(peers_cf), rel=1e-8)


def test_kd_iid_is_about_zero_and_seeded(rng):
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    mean, std = kernel_distance(a, b, subset_size=200, num_subsets=20, seed=0)
    assert abs(mean) < 3 * std + 1e-3
    assert kernel_distance(a, b, subset_size=200, num_subsets=20, seed=0) == (mean, std)
    shifted, _ = kernel_distance(a, b + 1.0, subset_size=200, num_subsets=20, seed=0)
    assert shifted > 10 * abs(mean)


def test_kd_subset_capped_and_errors(feats):
    real, fake = feats
    assert kernel_distance(real, fake, subset_size=1000, num_subsets=2)[0] == pytest.approx(
        kernel_distance(real, fake, subset_size=260, num_subsets=2)[0], rel=1e-12
    )
    with pytest.raises(FeatureError, match="at least 2 samples"):
        kernel_distance(real, fake[:1])
