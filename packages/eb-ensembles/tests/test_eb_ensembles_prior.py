"""The point-mass prior and the NPMLE/EM fixed point (reference §5 items 3-6), against numpy float64 by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.eb import PointMassPrior, npmle_em


def test_tied_loglik_posterior_is_prior_and_predictive_is_ensemble_mean():
    rng = np.random.default_rng(0)
    prior = PointMassPrior.uniform(6)
    tied = torch.full((6,), -123.456, dtype=torch.float64)
    post = prior.posterior(tied)
    assert float((post.weights - prior.weights).abs().max()) <= 1e-15
    member = torch.tensor(np.stack([rng.dirichlet(np.ones(4), size=50) for _ in range(6)]))
    assert float((post.predictive(member) - member.mean(0)).abs().max()) <= 1e-12
    assert float((prior.posterior(assume_maximizers=True).weights - prior.weights).abs().max()) == 0.0


def test_untied_posterior_matches_brute_force():
    rng = np.random.default_rng(1)
    w = rng.dirichlet(np.ones(5))
    ll = rng.normal(0, 3, size=5)
    brute = w * np.exp(ll) / np.sum(w * np.exp(ll))
    post = PointMassPrior(torch.log(torch.tensor(w))).posterior(torch.tensor(ll))
    np.testing.assert_allclose(post.weights.numpy(), brute, rtol=1e-12, atol=1e-15)


def test_eb_bound_and_equality_on_argmax_support():
    rng = np.random.default_rng(2)
    for _ in range(50):
        w = rng.dirichlet(np.ones(8))
        ll = rng.normal(0, 5, size=8)
        prior = PointMassPrior(torch.log(torch.tensor(w)))
        log_p = float(prior.log_marginal_likelihood(torch.tensor(ll)))
        assert log_p == pytest.approx(logsumexp(np.log(w) + ll), abs=1e-12)
        assert log_p <= ll.max() + 1e-12
        assert prior.eb_gap(torch.tensor(ll)) >= 0
    # equality iff the support lies in the argmax set
    ll = np.array([1.0, 3.0, 3.0, 2.0])
    on_argmax = PointMassPrior(torch.log(torch.tensor([0.0, 0.3, 0.7, 0.0], dtype=torch.float64)))
    assert float(on_argmax.log_marginal_likelihood(torch.tensor(ll))) == pytest.approx(3.0, abs=1e-12)
    assert on_argmax.eb_gap(torch.tensor(ll)) == pytest.approx(0.0, abs=1e-12)
    leaky = PointMassPrior(torch.log(torch.tensor([1e-3, 0.3, 0.697, 2e-3], dtype=torch.float64)))
    assert leaky.eb_gap(torch.tensor(ll)) > 1e-4


def test_elbo_identity():
    tied = torch.full((5,), 2.5, dtype=torch.float64)
    prior = PointMassPrior.uniform(5)
    assert prior.kl(prior) == 0.0
    assert prior.elbo(prior, tied) == pytest.approx(float(prior.log_marginal_likelihood(tied)), abs=1e-12)
    assert prior.elbo(prior, tied) == pytest.approx(2.5, abs=1e-12)
    rng = np.random.default_rng(3)
    ll = torch.tensor(rng.normal(0, 2, size=5))
    log_p = float(prior.log_marginal_likelihood(ll))
    assert prior.elbo(prior.posterior(ll), ll) == pytest.approx(log_p, abs=1e-12)  # tight at the posterior
    for _ in range(20):
        q = PointMassPrior(torch.log(torch.tensor(rng.dirichlet(np.ones(5)))))
        w = q.weights.numpy()
        by_hand = float(np.sum(w * ll.numpy()) - np.sum(w * np.log(w / 0.2)))
        assert prior.elbo(q, ll) == pytest.approx(by_hand, abs=1e-12)
        assert prior.elbo(q, ll) <= log_p + 1e-12


def test_ess_and_entropy():
    assert PointMassPrior.uniform(7).ess() == pytest.approx(7.0)
    assert PointMassPrior.uniform(7).entropy() == pytest.approx(math.log(7))
    single = PointMassPrior(torch.tensor([0.0, -math.inf, -math.inf], dtype=torch.float64))
    assert single.ess() == pytest.approx(1.0)


def test_npmle_shared_em_is_monotone_and_concentrates():
    rng = np.random.default_rng(4)
    grid_ll = torch.tensor(rng.normal(-1, 0.3, size=(20, 50)))  # n x J
    result = npmle_em(grid_ll, max_iterations=5000, tol=1e-13)
    history = np.array(result.log_marginal)
    assert np.all(np.diff(history) >= -1e-12)
    total = grid_ll.sum(0)
    argmax = total >= total.max() - 1e-12
    assert float(result.prior.weights[argmax].sum()) > 1 - 1e-6
    assert history[-1] == pytest.approx(float(total.max()), abs=1e-6)
    # closed form: t EM steps from uniform give w ∝ exp(t ℓ)
    three = npmle_em(grid_ll, max_iterations=3, tol=0.0)
    expected = np.exp(3 * total.numpy() - logsumexp(3 * total.numpy()))
    np.testing.assert_allclose(three.prior.weights.numpy(), expected, rtol=1e-10, atol=1e-300)


def test_npmle_per_observation_em_matches_hand_em():
    rng = np.random.default_rng(5)
    ll = rng.normal(-2, 1, size=(30, 12))
    result = npmle_em(torch.tensor(ll), shared_parameter=False, max_iterations=25, tol=0.0)
    w = np.full(12, 1 / 12)
    history = [np.sum(logsumexp(np.log(w) + ll, axis=1))]
    for _ in range(25):
        resp = np.log(w) + ll
        resp = np.exp(resp - logsumexp(resp, axis=1, keepdims=True))
        w = resp.mean(0)
        history.append(np.sum(logsumexp(np.log(w) + ll, axis=1)))
    np.testing.assert_allclose(result.prior.weights.numpy(), w, rtol=1e-10)
    np.testing.assert_allclose(result.log_marginal, history, rtol=1e-12)
    assert np.all(np.diff(history) >= -1e-12)


def test_prior_input_errors():
    with pytest.raises(InvalidInputError, match="M >= 1"):
        PointMassPrior.uniform(0)
    with pytest.raises(InvalidInputError, match="3 entries but the prior has 4 atoms"):
        PointMassPrior.uniform(4).log_marginal_likelihood(torch.zeros(3))
    with pytest.raises(InvalidInputError, match="NaN"):
        PointMassPrior.uniform(2).posterior(torch.tensor([0.0, math.nan]))
    with pytest.raises(InvalidInputError, match="needs `loglik`"):
        PointMassPrior.uniform(2).posterior()
