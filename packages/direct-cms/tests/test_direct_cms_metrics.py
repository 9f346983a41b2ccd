"""Reference §7 item 11 and the metrics against independent float64 computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import energy_distance as scipy_energy

from direct_cms.classifier import load_classifier
from direct_cms.data import load_dataset, ring_centres
from direct_cms.evaluation import EvalNoise
from direct_cms.metrics import energy_distance, frechet_distance, mode_stats, ode_error, precision_recall


def test_frechet_matches_eigenvalue_route():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5))
    b = rng.normal(size=(300, 5)) * 1.5 + 0.3
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr((Σa Σb)^{1/2}) = Σ √λ_i(Σa Σb), eigenvalues real and ≥ 0 (similar to a PSD matrix)
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvals(ca @ cb).real, 0, None)).sum()
    expected = ((mu_a - mu_b) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * trace_sqrt
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_energy_distance_matches_scipy_1d():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(200, 1)), rng.normal(0.5, 1.2, size=(150, 1))
    assert energy_distance(x, y) == pytest.approx(scipy_energy(x[:, 0], y[:, 0]) ** 2, rel=1e-9)


def test_precision_recall_hand_built():
    real = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    fake = np.array([[0.5, 0.5], [10.0, 10.0]])
    precision, recall = precision_recall(real, fake, k=1)
    assert precision == 0.5  # (0.5, 0.5) lies within 1 of a real point; (10, 10) does not
    # fake k=1 radii: both equal |(0.5,0.5)-(10,10)| ≈ 13.4, so every real point is inside the fake manifold
    assert recall == 1.0
    precision, recall = precision_recall(real, np.array([[0.5, 0.5], [0.6, 0.5], [10.0, 10.0], [10.1, 10.0]]), k=1)
    assert precision == 0.5 and recall == 0.0  # fake radii are 0.1; every real point is >= 0.64 from a fake one


def test_mode_stats_hand_built():
    centres = ring_centres()
    points = torch.cat([centres[:3], torch.tensor([[0.0, 0.0]], dtype=torch.float64)])
    precision, coverage = mode_stats(points, centres, 0.03)
    assert precision == 0.75 and coverage == 3 / 8


def test_ode_error_and_fixed_noise():
    noise_a = EvalNoise.generate((1, 8, 8), 16, 10, seed=3, max_steps=4)
    noise_b = EvalNoise.generate((1, 8, 8), 16, 10, seed=3, max_steps=4)
    assert torch.equal(noise_a.x_T, noise_b.x_T) and torch.equal(noise_a.renoise, noise_b.renoise)
    assert ode_error(noise_a.x_T, noise_b.x_T) == 0.0
    assert ode_error(torch.zeros(2, 2), torch.full((2, 2), 2.0)) == 4.0
    assert noise_a.labels.tolist() == [i % 10 for i in range(16)]


def test_classifier_features_separate_real_from_degraded(classifier_path):
    data = load_dataset("digits")
    loaded = load_classifier(classifier_path)
    with torch.no_grad():
        assert (loaded(data.x).argmax(1) == data.labels).float().mean() > 0.9
        perm = torch.randperm(data.x.shape[0], generator=torch.Generator().manual_seed(0))
        half_a, half_b = data.x[perm[:800]], data.x[perm[800:1600]]
        blurred = torch.nn.functional.avg_pool2d(half_b, 3, 1, 1)  # a "smooth" student
        fa, fb, fblur = (loaded.features(v) for v in (half_a, half_b, blurred))
    split = frechet_distance(fa, fb)
    assert split < 0.2 * frechet_distance(fa, fblur)
