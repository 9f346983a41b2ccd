"""Every method on a linear-Gaussian model against the exact conjugate posterior, within its known approximation.

Model: ``y = [x, 1] w + ε``, ``ε ~ N(0, σ²)`` with σ known, prior ``w ~ N(0, α⁻¹ I)`` (the network is one
``nn.Linear``: ``hidden=()``, ``noise_std=σ``). Exact posterior: precision ``Λ = X̃ᵀX̃/σ² + αI``, mean
``Λ⁻¹ X̃ᵀy/σ²`` (float64, closed form; independent of the code under test).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eb_ensembles.data import Dataset, load_dataset
from eb_ensembles.mcmc_diagnostics import effective_sample_size, split_rhat
from eb_ensembles.methods import METHODS, MethodConfig, build_method
from eb_ensembles.training.config import TrainConfig

SIGMA, ALPHA, N = 0.5, 2.0, 40


@pytest.fixture(scope="module")
def linear_gaussian():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 2, generator=g, dtype=torch.float64)
    y = (
        x @ torch.tensor([1.5, -0.7], dtype=torch.float64)
        + 0.3
        + SIGMA * torch.randn(N, generator=g, dtype=torch.float64)
    )
    xa = torch.cat([x, torch.ones(N, 1, dtype=torch.float64)], 1)
    precision = xa.T @ xa / SIGMA**2 + ALPHA * torch.eye(3, dtype=torch.float64)
    mean = torch.linalg.solve(precision, xa.T @ y / SIGMA**2)
    return {
        "data": Dataset("linear", "regression", x, y, x, y),
        "xa": xa,
        "mean": mean,
        "precision": precision,
        "sd": torch.linalg.inv(precision).diag().sqrt(),
    }


def _config(**kwargs) -> MethodConfig:
    train = TrainConfig(
        **{"members": 1, "epochs": 300, "batch_size": N, "lr": 0.05, "dtype": "float64", **kwargs.pop("train", {})}
    )
    return MethodConfig(**{"hidden": (), "noise_std": SIGMA, "prior_precision": ALPHA, "train": train, **kwargs})


@pytest.mark.parametrize("backend", ["laplace-torch", "ggn"])
@pytest.mark.parametrize("subset", ["all", "last_layer"])
def test_laplace_is_exact_on_linear_gaussian(subset, backend, linear_gaussian):
    lg = linear_gaussian
    config = _config(laplace_subset=subset, laplace_backend=backend, samples=4000)
    method = build_method("laplace", config).fit(lg["data"])
    assert method.backend == backend
    torch.testing.assert_close(method.precision, lg["precision"], atol=1e-10, rtol=1e-10)  # GGN = exact Hessian
    assert float(((method.mean - lg["mean"]) / lg["sd"]).abs().max()) < 1e-3  # MAP = posterior mean
    # the linearised predictive's sample moments match the exact predictive f(x) ~ N(x̃ᵀμ, x̃ᵀΛ⁻¹x̃)
    means, variances = method.predict_samples(lg["data"].x_test)
    assert torch.all(variances == SIGMA**2)
    exact_sd = ((lg["xa"] @ torch.linalg.inv(lg["precision"])) * lg["xa"]).sum(1).sqrt()
    z = (means.mean(0) - lg["xa"] @ lg["mean"]) / (exact_sd / math.sqrt(4000))
    assert float(z.abs().max()) < 4.5
    assert float((means.std(0) / exact_sd - 1).abs().max()) < 0.06  # sd of an sd estimate from 4000 draws: ~1.1 %


def test_map_is_the_posterior_mean(linear_gaussian):
    lg = linear_gaussian
    method = build_method("map", _config()).fit(lg["data"])
    theta = torch.cat([t.flatten() for t in method.ensemble.states[0].values()])
    assert float(((theta - lg["mean"]) / lg["sd"]).abs().max()) < 1e-3


def test_ensemble_members_are_the_maximum_likelihood_estimate(linear_gaussian):
    lg = linear_gaussian
    method = build_method("ensemble", _config(train={"members": 3})).fit(lg["data"])
    ols = torch.linalg.lstsq(lg["xa"], lg["data"].y_train[:, None]).solution[:, 0]
    flat = method.ensemble.flat_parameters()
    assert float((flat - ols).abs().max()) < 1e-3  # no prior: every member converges to the OLS solution


def test_vi_mean_field_optimum(linear_gaussian):
    """Mean-field optimum for a Gaussian posterior: exact means, variances 1/Λ_jj (stochastic optimisation noise)."""
    lg = linear_gaussian
    method = build_method("vi", _config(train={"epochs": 1000, "lr": 0.01})).fit(lg["data"])
    mu, var = method.posterior()
    assert float(((mu - lg["mean"]) / lg["sd"]).abs().max()) < 0.35
    ratio = var * lg["precision"].diag()
    assert float(ratio.min()) > 0.75 and float(ratio.max()) < 1.3


def test_swag_mean_and_variance_within_a_factor(linear_gaussian):
    lg = linear_gaussian
    batch = 8
    hessian_scale = float(torch.linalg.eigvalsh(lg["precision"] / N).mean())
    lr = 2 * batch / (N * hessian_scale)  # the learning rate whose SGD noise matches the posterior scale
    config = _config(swag_epochs=100, swag_rank=10, swag_lr=lr, train={"epochs": 100, "batch_size": batch})
    method = build_method("swag", config).fit(lg["data"])
    assert float(((method.mean - lg["mean"]) / lg["sd"]).abs().max()) < 0.5
    ratio = method.covariance.diag() / lg["sd"] ** 2
    assert float(ratio.min()) > 0.1 and float(ratio.max()) < 2.0
    samples = method.sample(3000)
    torch.testing.assert_close(samples.mean(0), method.mean, atol=float(4 * lg["sd"].max() / math.sqrt(3000)), rtol=0)


def test_mc_dropout_predictive_mean(linear_gaussian):
    lg = linear_gaussian
    config = _config(hidden=(32,), dropout=0.1, samples=100, train={"lr": 0.01})
    means, _ = build_method("mc_dropout", config).fit(lg["data"]).predict_samples(lg["data"].x_test)
    exact = lg["xa"] @ lg["mean"]
    rmse = float(((means.mean(0) - exact) ** 2).mean().sqrt())
    assert rmse < 0.15 * float(lg["data"].y_train.std())
    assert float(means.std(0).min()) > 0  # dropout masks differ


def test_hmc_against_the_conjugate_posterior(linear_gaussian):
    lg = linear_gaussian
    config = _config(hmc_chains=4, hmc_warmup=150, hmc_draws=400, hmc_leapfrog=10)
    method = build_method("hmc", config).fit(lg["data"])
    draws = method.draws
    ess = torch.tensor(effective_sample_size(draws))
    flat = draws.flatten(0, 1)
    z = (flat.mean(0) - lg["mean"]) / (lg["sd"] / ess.sqrt())
    assert float(z.abs().max()) < 4.0
    ratio = flat.var(0) / lg["sd"] ** 2
    assert float((ratio - 1).abs().max()) < 0.2  # sd of a variance estimate from ESS ~1000 draws: ~4.5 %
    d = method.diagnostics
    assert d["predictive_rhat_max"] < 1.05 and d["param_rhat_max"] < 1.05
    assert all(0.7 < a < 0.99 for a in d["acceptance"])  # dual averaging aims at 0.8 and overshoots (0.90-0.95)
    # the adapted diagonal inverse mass matrix tracks the posterior marginal variances: the identity would be
    # 80-250x them; one 25-draw window estimates each to within a factor of a few (measured 0.18-1.6)
    im_ratio = method.inv_mass / lg["sd"] ** 2
    assert float(im_ratio.min()) > 0.02 and float(im_ratio.max()) < 10.0


def test_mass_matrix_windows_follow_stan():
    from eb_ensembles.methods.hmc import mass_matrix_windows

    assert mass_matrix_windows(1000) == [(75, 100), (100, 150), (150, 250), (250, 450), (450, 950)]  # as Stan
    assert mass_matrix_windows(150) == [(75, 100)]
    assert mass_matrix_windows(100) == [(15, 40), (40, 90)]  # short warm-up: 15 % / 10 % buffers
    assert mass_matrix_windows(20) == []


def test_mcmc_diagnostics_against_closed_forms():
    rng = np.random.default_rng(1)
    rho, chains, length = 0.8, 4, 4000
    x = np.zeros((chains, length))
    noise = rng.normal(size=(chains, length))
    x[:, 0] = noise[:, 0]
    for t in range(1, length):
        x[:, t] = rho * x[:, t - 1] + math.sqrt(1 - rho**2) * noise[:, t]
    expected = chains * length * (1 - rho) / (1 + rho)  # AR(1) integrated autocorrelation time (1+ρ)/(1-ρ)
    assert abs(float(effective_sample_size(x)[0]) / expected - 1) < 0.15
    assert float(split_rhat(x)[0]) < 1.01
    shifted = rng.normal(size=(4, 500))
    shifted[0] += 1.0
    assert float(split_rhat(shifted)[0]) > 1.05


def test_registry_round_trip_every_method_on_classification():
    data = load_dataset("moons", 0, n_train=120)
    assert set(METHODS) == {"ensemble", "map", "mc_dropout", "vi", "laplace", "swag", "hmc"}
    train = TrainConfig(members=2, epochs=3, batch_size=32, lr=1e-2)
    config = MethodConfig(
        hidden=(8,), samples=5, swag_epochs=3, swag_rank=2, hmc_chains=2, hmc_warmup=5, hmc_draws=4, train=train
    )
    for name in METHODS:
        method = build_method(name, config).fit(data)
        assert method.name == name
        probs = method.predict_samples(data.x_test[:7])
        assert probs.ndim == 3 and probs.shape[1:] == (7, 2), name
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:2]), atol=1e-5, rtol=0)


def test_mc_dropout_is_deterministic_given_the_seed(linear_gaussian):
    config = _config(hidden=(8,), dropout=0.2, samples=5, train={"epochs": 5, "batch_size": 8})
    a = build_method("mc_dropout", config).fit(linear_gaussian["data"]).predict_samples(linear_gaussian["data"].x_test)
    b = build_method("mc_dropout", config).fit(linear_gaussian["data"]).predict_samples(linear_gaussian["data"].x_test)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
