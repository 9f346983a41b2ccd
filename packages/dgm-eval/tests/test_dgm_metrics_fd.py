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
    # Agrees with the sqrtm path's value where that one is still usable (it may only add a tiny imaginary part).
    assert value == pytest.approx(_pytorch_fid(a, b), rel=1e-6)


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
