"""Stick-breaking, Kumaraswamy moments and KL against float64 numpy / scipy (reference §6 items 1-3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from bnpo.prior import (
    StickBreakingPrior,
    kl_kumaraswamy_beta_mc,
    kumaraswamy_log_prob,
    kumaraswamy_mean,
    kumaraswamy_sample,
    stick_breaking,
)
from sixlab_shared import make_generator


def test_stick_breaking_matches_numpy_float64() -> None:
    rng = np.random.default_rng(0)
    v = rng.uniform(0.01, 0.99, size=(5, 7))
    expected = np.empty_like(v)
    for row in range(5):
        for k in range(7):
            expected[row, k] = v[row, k] * np.prod(1.0 - v[row, :k])
    eta = stick_breaking(torch.tensor(v, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(eta, expected, rtol=1e-12)
    np.testing.assert_allclose(eta.sum(-1), 1.0 - np.prod(1.0 - v, axis=-1), rtol=1e-12)


@pytest.mark.parametrize(("a", "b"), [(0.5, 2.0), (1.0, 1.0), (3.0, 0.7), (2.0, 5.0)])
def test_kumaraswamy_sample_mean_within_three_sigma(a: float, b: float) -> None:
    n = 200_000
    at, bt = torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)
    v = kumaraswamy_sample(at, bt, n, generator=make_generator(3))[:, 0].numpy()
    mean = b * special.beta(1 + 1 / a, b)  # closed form, float64
    second = b * special.beta(1 + 2 / a, b)
    sigma = math.sqrt((second - mean**2) / n)
    assert abs(v.mean() - mean) < 3 * sigma
    assert float(kumaraswamy_mean(at, bt)) == pytest.approx(mean, rel=1e-10)


def test_kumaraswamy_log_prob_matches_closed_form_cdf_derivative() -> None:
    # pdf = d/dv [1 - (1 - v^a)^b]: integrate our density numerically and compare with the CDF.
    a, b = 1.7, 2.3
    at, bt = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    pdf = lambda x: math.exp(float(kumaraswamy_log_prob(torch.tensor(x, dtype=torch.float64), at, bt)))  # noqa: E731
    for upper in (0.2, 0.5, 0.9):
        value, _ = integrate.quad(pdf, 0.0, upper)
        assert value == pytest.approx(1.0 - (1.0 - upper**a) ** b, abs=1e-8)


def _kl_quad(a: float, b: float, alpha: float) -> float:
    def integrand(v: float) -> float:
        log_q = math.log(a * b) + (a - 1) * math.log(v) + (b - 1) * math.log1p(-(v**a))
        return math.exp(log_q) * (log_q - stats.beta.logpdf(v, 1.0, alpha))

    value, _ = integrate.quad(integrand, 0.0, 1.0, limit=200)
    return value


@pytest.mark.parametrize(("a", "b", "alpha"), [(0.8, 1.5, 1.0), (2.0, 3.0, 0.5), (1.3, 1.2, 3.0)])
def test_monte_carlo_kl_matches_quadrature(a: float, b: float, alpha: float) -> None:
    kl = kl_kumaraswamy_beta_mc(
        torch.tensor([a], dtype=torch.float64),
        torch.tensor([b], dtype=torch.float64),
        torch.tensor(alpha, dtype=torch.float64),
        100_000,
        generator=make_generator(0),
    )
    assert float(kl[0]) == pytest.approx(_kl_quad(a, b, alpha), abs=1e-2)


def test_kl_is_exactly_zero_when_kumaraswamy_equals_the_prior() -> None:
    alpha = torch.tensor(2.5, dtype=torch.float64)
    kl = kl_kumaraswamy_beta_mc(
        torch.tensor([1.0], dtype=torch.float64), alpha.reshape(1), alpha, 1000, generator=make_generator(0)
    )
    assert abs(float(kl[0])) < 1e-12
    assert _kl_quad(1.0, 2.5, 2.5) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("estimator", ["plugin", "mc"])
def test_prior_estimators_shapes_and_zero_kl(estimator: str) -> None:
    prior = StickBreakingPrior(3, estimator=estimator, n_draws=30, generator=make_generator(0))
    with torch.no_grad():  # q = prior on every stick: both KL estimates vanish exactly
        prior.log_alpha.fill_(math.log(2.0))
        for stick in prior.sticks:
            stick.copy_(torch.tensor([0.0, math.log(2.0)]))
    eta, kl = prior.sample(8, generator=make_generator(1))
    assert eta.shape == (8, 3)
    assert float(kl.detach()) == pytest.approx(0.0, abs=1e-5)
    assert bool((eta.sum(-1) < 1).all())
    if estimator == "plugin":
        assert torch.equal(eta[0], eta[7])
    else:
        assert not torch.equal(eta[0], eta[7])


def test_plugin_eta_is_the_average_of_stick_draws() -> None:
    prior = StickBreakingPrior(4, estimator="plugin", n_draws=30, generator=make_generator(0))
    a, b = prior.ab()
    v = kumaraswamy_sample(a, b, 30, generator=make_generator(5))
    eta, _ = prior.sample(2, generator=make_generator(5))
    expected = np.mean([np.cumprod(np.r_[1.0, 1 - row[:-1]]) * row for row in v.detach().double().numpy()], axis=0)
    np.testing.assert_allclose(eta[0].detach().numpy(), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="estimator"):
        StickBreakingPrior(1, estimator="taylor")
