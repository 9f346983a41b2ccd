"""prdc, realism and AuthPct: equal to the prdc package and to float64 brute force, whatever the block size."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from prdc import compute_prdc

from dgm_eval.metrics import FeatureError, authpct, prdc, realism
from dgm_eval.metrics.neighbours import kth_nearest_sq


def _peer(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints its sample counts
        return {key: float(value) for key, value in compute_prdc(real, fake, k).items()}


def _dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


@pytest.mark.parametrize(
    ("n_real", "n_fake", "dim", "k", "block"), [(300, 260, 24, 5, 64), (200, 333, 128, 3, 97), (150, 150, 2, 5, 2048)]
)
def test_prdc_equals_prdc_package_exactly(rng, n_real, n_fake, dim, k, block):
    real = rng.normal(size=(n_real, dim))
    fake = rng.normal(size=(n_fake, dim)) * 1.1 + 0.05
    assert prdc(real, fake, nearest_k=k, block_size=block) == _peer(real, fake, k)


def test_prdc_with_duplicates_equals_float64_brute_force(rng):
    real = rng.normal(size=(120, 6))
    real[10:25] = real[0]  # a clump of identical reals: ties everywhere
    fake = np.concatenate([real[:40], rng.normal(size=(60, 6))])  # copies and fresh samples
    k = 5
    d_rr, d_ff, d_rf = _dists(real, real), _dists(fake, fake), _dists(real, fake)
    r_real, r_fake = np.sort(d_rr, 1)[:, k], np.sort(d_ff, 1)[:, k]
    expected = {
        "precision": (d_rf < r_real[:, None]).any(0).mean(),
        "recall": (d_rf < r_fake[None, :]).any(1).mean(),
        "density": (1.0 / k) * (d_rf < r_real[:, None]).sum(0).mean(),
        "coverage": (d_rf.min(1) < r_real).mean(),
    }
    for block in (7, 64, 4096):
        assert prdc(real, fake, nearest_k=k, block_size=block) == pytest.approx(expected, abs=0)


def test_prdc_ignores_sample_order_and_accepts_tensors(feats, rng):
    real, fake = feats
    expected = prdc(real, fake)
    shuffled = prdc(real[rng.permutation(len(real))], fake[rng.permutation(len(fake))], block_size=50)
    assert shuffled == expected
    assert prdc(torch.from_numpy(real), torch.from_numpy(fake)) == expected


def test_kth_nearest_matches_sorting(rng):
    x = rng.normal(size=(257, 40))
    y = rng.normal(size=(190, 40))
    for k in (1, 3, 9):
        vals, idx = kth_nearest_sq(torch.from_numpy(x), torch.from_numpy(y), k, block_size=50)
        d2 = ((x[:, None] - y[None]) ** 2).sum(-1)
        np.testing.assert_allclose(vals.numpy(), np.sort(d2, 1)[:, k - 1], rtol=1e-12)
        np.testing.assert_array_equal(idx.numpy(), np.argsort(d2, 1, kind="stable")[:, k - 1])


def test_realism_equals_public_formula(feats):
    real, fake = feats
    k = 5
    radii = np.sort(_dists(real, real), 1)[:, k]
    keep = radii < np.median(radii)
    expected = (radii[keep][:, None] / _dists(real[keep], fake)).max(0)
    np.testing.assert_allclose(realism(real, fake, nearest_k=k, block_size=37), expected, rtol=1e-9)


def test_authpct_brute_force_and_extremes(feats, rng):
    real, fake = feats
    d_rr = _dists(real, real)
    np.fill_diagonal(d_rr, np.inf)
    d_rf = _dists(real, fake)
    j = d_rf.argmin(0)
    expected = 100 * (d_rr.min(1)[j] < d_rf.min(0)).mean()
    assert authpct(real, fake, block_size=64) == pytest.approx(expected, abs=1e-12)
    assert authpct(real, real[rng.permutation(len(real))]) == 0.0  # copies are never authentic
    assert authpct(real, fake + 100.0) == 100.0  # far away: always authentic


def test_prdc_errors(feats):
    real, fake = feats
    with pytest.raises(FeatureError, match="fake: needs at least 6 samples, got 5"):
        prdc(real, fake[:5], nearest_k=5)
    with pytest.raises(FeatureError, match="feature dimensions differ"):
        prdc(real, fake[:, :3])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_neighbour_metrics_on_cuda_equal_cpu(feats):
    real, fake = feats
    cuda = (torch.from_numpy(real).cuda(), torch.from_numpy(fake).cuda())
    assert prdc(*cuda) == prdc(real, fake)
    assert authpct(*cuda) == authpct(real, fake)


def test_realism_counts_the_infinite_scores_of_copies_and_prdc_ignores_realism(rng):
    from dgm_eval.api import compute_metrics

    real = rng.normal(size=(120, 6))
    fake = np.concatenate([real[:7], rng.normal(size=(113, 6))])  # 7 exact copies; N_G = N_R: no prdc subsample
    both = compute_metrics(real, fake, ["prdc", "realism"], nearest_k=3)
    alone = compute_metrics(real, fake, ["prdc"], nearest_k=3)
    assert {k: both[k] for k in alone} == alone  # prdc sees the same sets with or without realism
    scores = both["realism"]
    # a copy sits at distance 0 from a reference point: infinite realism when that point's radius is below median
    radii = np.sort(np.linalg.norm(real[:, None] - real[None], axis=2), axis=1)[:, 3]
    expected = int((radii[:7] < np.median(radii)).sum())
    assert both["realism_n_inf"] == int(np.isinf(scores).sum()) == expected > 0
    assert both["realism_mean"] == pytest.approx(float(np.mean(scores[np.isfinite(scores)])))
