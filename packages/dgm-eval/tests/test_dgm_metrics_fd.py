"""FD, FD_eff, FD∞ and the statistics: checked against pytorch-fid (scipy sqrtm), numpy and closed forms."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance

from dgm_eval.metrics import (
    FeatureError,
    GaussianStats,
    StatsAccumulator,
    fd_infinity,
    feature_statistics,
    fit_fd_infinity,
    frechet_distance,
    frechet_distance_eff,
)


def _pytorch_fid(a: np.ndarray, b: np.ndarray) -> float:
    return float(calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)))


@pytest.mark.parametrize(("n", "d"), [(5000, 64), (2000, 256)])
def test_fd_equals_pytorch_fid(rng, n, d):
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    a = rng.normal(size=(n, d)) @ mix
    b = rng.normal(size=(n, d)) @ (mix + 0.1 * np.eye(d)) + 0.3
    ours, peer = frechet_distance(a, b), _pytorch_fid(a, b)
    assert ours == pytest.approx(peer, rel=1e-10)
    assert frechet_distance_eff(a, b) == pytest.approx(peer, rel=1e-8)


def test_fd_closed_form_unit_gaussians():
    # N(0, I) vs N(1, I) in D = 2048: FD = ||1||² = 2048 exactly.
    d = 2048
    a = GaussianStats(torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64))
    b = GaussianStats(torch.ones(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64))
    assert frechet_distance(a, b) == pytest.approx(2048.0, abs=1e-9)


def test_fd_zero_to_itself_and_symmetric(feats):
    real, fake = feats
    trace = np.trace(np.cov(real, rowvar=False))
    assert abs(frechet_distance(real, real)) < 1e-8 * trace
    assert frechet_distance(real, fake) == pytest.approx(frechet_distance(fake, real), rel=1e-10)


def test_fd_singular_covariance_warns_and_stays_finite(rng, caplog):
    a, b = rng.normal(size=(40, 64)), rng.normal(size=(50, 64)) + 0.2
    with caplog.at_level(logging.WARNING, logger="dgm_eval.metrics.fd"):
        value = frechet_distance(a, b)
    assert isinstance(value, float) and np.isfinite(value) and value > 0
    assert "N=40 <= D=64" in caplog.text
    # Agrees with the sqrtm path's value where that one is still usable (it may only add a tiny imaginary part;
    # sqrtm of a rank-deficient matrix is accurate to ~sqrt(eps) only, which varies with the BLAS: hence 1e-5).
    assert value == pytest.approx(_pytorch_fid(a, b), rel=1e-5)


def test_fd_from_saved_statistics(tmp_path, feats):
    real, fake = feats
    feature_statistics(real).save(tmp_path / "ref.npz")
    np.savez(tmp_path / "pytorch_fid.npz", mu=fake.mean(0), sigma=np.cov(fake, rowvar=False))
    expected = _pytorch_fid(real, fake)
    assert frechet_distance(tmp_path / "ref.npz", fake) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(str(tmp_path / "ref.npz"), str(tmp_path / "pytorch_fid.npz")) == pytest.approx(
        expected, rel=1e-10
    )
    assert GaussianStats.load(tmp_path / "ref.npz").n == real.shape[0]


def test_fd_accepts_torch_tensors_of_any_float_dtype(feats):
    real, fake = feats
    expected = frechet_distance(real, fake)
    assert frechet_distance(torch.from_numpy(real), torch.from_numpy(fake)) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(torch.from_numpy(real).float(), fake.astype(np.float32)) == pytest.approx(
        expected, rel=1e-5
    )


def test_streaming_statistics_equal_numpy_and_ignore_batching(rng):
    x = rng.normal(size=(301, 12)) * 3 + 100.0  # a large mean: the naive Σx² − nμ² form would lose digits
    for sizes in ([301], [1, 300], [100, 100, 101], [7] * 43):
        acc = StatsAccumulator()
        start = 0
        for size in sizes:
            acc.update(x[start : start + size])
            start += size
        stats = acc.compute()
        np.testing.assert_allclose(stats.mean.numpy(), x.mean(0), rtol=1e-13)
        np.testing.assert_allclose(stats.cov.numpy(), np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)
        assert stats.n == 301


def test_fd_errors(feats):
    real, fake = feats
    with pytest.raises(FeatureError, match="feature dimensions differ"):
        frechet_distance(real, fake[:, :10])
    bad = fake.copy()
    bad[3, 2] = np.nan
    with pytest.raises(FeatureError, match="1 of 260 feature rows hold NaN or inf"):
        frechet_distance(real, bad)
    with pytest.raises(FeatureError, match=r"expected features of shape \(N, D\)"):
        frechet_distance(real, fake[0])
    with pytest.raises(FeatureError, match="at least 2 samples"):
        frechet_distance(real, fake[:1])


def test_fd_infinity_fit_recovers_intercept():
    ns = np.linspace(500, 5000, 15).astype(int)
    assert fit_fd_infinity(ns, 7.25 + 1234.0 / ns) == pytest.approx(7.25, abs=1e-9)


def test_fd_infinity_seeded_and_unbiased(rng):
    real = rng.normal(size=(3000, 8))
    fake = rng.normal(size=(3000, 8)) + 0.5  # true FD = 8 * 0.25 = 2
    v1, v2 = fd_infinity(real, fake, seed=3), fd_infinity(real, fake, seed=3)
    assert v1 == v2
    assert fd_infinity(real, fake, seed=4) != v1
    assert v1 == pytest.approx(2.0, abs=0.1)
    # Bias removal: FD∞ is below the finite-sample FD of a small subset.
    assert v1 < frechet_distance(real, fake[:300])


def test_fd_infinity_accepts_saved_reference_statistics(rng, tmp_path):
    real, fake = rng.normal(size=(800, 6)), rng.normal(size=(600, 6)) + 0.3
    feature_statistics(real).save(tmp_path / "ref.npz")
    expected = fd_infinity(real, fake, seed=1)
    assert fd_infinity(tmp_path / "ref.npz", fake, seed=1) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(FeatureError, match="feature dimensions differ"):
        fd_infinity(tmp_path / "ref.npz", fake[:, :4])


def _dense_reference_fd(x_r: np.ndarray, x_g: np.ndarray, rank: int) -> float:
    """Independent float64 FD: scipy eigh square root of Σ_R, eigvalsh of √Σ_R Σ_G √Σ_R, the top ``rank``
    eigenvalues only (the rest are zero in exact arithmetic when a set has N <= D)."""
    import scipy.linalg

    mu_r, mu_g = x_r.mean(0), x_g.mean(0)
    s_r, s_g = np.cov(x_r, rowvar=False), np.cov(x_g, rowvar=False)
    w, v = scipy.linalg.eigh(s_r)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = scipy.linalg.eigvalsh(root @ s_g @ root)[::-1][:rank]
    return float(((mu_r - mu_g) ** 2).sum() + np.trace(s_r) + np.trace(s_g) - 2 * np.sqrt(np.clip(lam, 0, None)).sum())


@pytest.mark.parametrize(("n_r", "n_g", "d"), [(60, 40, 100), (40, 60, 100), (250, 50, 100), (80, 80, 80)])
def test_gram_form_equals_the_dense_fd_when_n_le_d(rng, n_r, n_g, d):
    from dgm_eval.metrics.fd import _SqrtFactor, fd_from_statistics

    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    x_r = rng.normal(size=(n_r, d)) @ mix + 3.0
    x_g = rng.normal(size=(n_g, d)) @ mix * 1.2 + 3.1
    expected = _dense_reference_fd(x_r, x_g, min(n_r, n_g) - 1)
    for value in (frechet_distance(x_r, x_g), frechet_distance(x_g, x_r), frechet_distance_eff(x_r, x_g)):
        assert value == pytest.approx(expected, rel=1e-8)
    # saved statistics on one side, rows on the other: G Σ_R Gᵀ form
    stats_r = GaussianStats(torch.from_numpy(x_r.mean(0)), torch.from_numpy(np.cov(x_r, rowvar=False)), n_r)
    assert frechet_distance(stats_r, x_g) == pytest.approx(expected, rel=1e-8)
    # the dense path (what ran before) agrees where its √ of round-off allows
    sa, sb = (
        GaussianStats(*(torch.from_numpy(t) for t in (x_r.mean(0), np.cov(x_r, rowvar=False)))),
        GaussianStats(*(torch.from_numpy(t) for t in (x_g.mean(0), np.cov(x_g, rowvar=False)))),
    )
    assert fd_from_statistics(sa, sb, factor=_SqrtFactor(sa.cov)) == pytest.approx(expected, rel=1e-5)


def test_fd_infinity_gram_equals_dense_subsets(rng):
    from dgm_eval.metrics.fd import _SqrtFactor, fd_from_statistics, feature_statistics
    from dgm_eval.metrics.fd_infinity import fd_infinity_sizes, fit_fd_infinity

    d = 90
    x_r = rng.normal(size=(70, d)) + 0.5
    x_g = rng.normal(size=(80, d)) * 1.1
    sizes = fd_infinity_sizes(80)
    gen = torch.Generator().manual_seed(4)
    draws = [torch.randperm(80, generator=gen)[: int(n)] for n in sizes]
    g = torch.from_numpy(x_g)
    expected = fit_fd_infinity(
        sizes, [_dense_reference_fd(x_r, x_g[idx.numpy()], min(70, len(idx)) - 1) for idx in draws]
    )
    assert fd_infinity(x_r, x_g, seed=4) == pytest.approx(expected, rel=1e-8)
    sr = feature_statistics(x_r)
    dense = fit_fd_infinity(
        sizes, [fd_from_statistics(sr, feature_statistics(g[i]), factor=_SqrtFactor(sr.cov)) for i in draws]
    )
    assert fd_infinity(sr, x_g, seed=4) == pytest.approx(dense, rel=1e-5)
