"""Our vectorised-chain HMC against Pyro's NUTS on a small Bayesian MLP: the predictive moments must agree."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eb_ensembles.data import Dataset
from eb_ensembles.mcmc_diagnostics import effective_sample_size
from eb_ensembles.methods import MethodConfig, build_method
from eb_ensembles.training.config import TrainConfig

pyro = pytest.importorskip("pyro")

NOISE, HIDDEN = 0.3, 5


def _data():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(20, 1, generator=g, dtype=torch.float64) * 4 - 2
    y = torch.sin(1.5 * x[:, 0]) + NOISE * torch.randn(20, generator=g, dtype=torch.float64)
    return x, y


def _pyro_predictive(x, y, grid, draws=500, warmup=300):
    import pyro.distributions as dist
    from pyro.infer import MCMC, NUTS

    def model(x, y):
        w1 = pyro.sample("w1", dist.Normal(torch.zeros(HIDDEN, 1, dtype=x.dtype), 1.0).to_event(2))
        b1 = pyro.sample("b1", dist.Normal(torch.zeros(HIDDEN, dtype=x.dtype), 1.0).to_event(1))
        w2 = pyro.sample("w2", dist.Normal(torch.zeros(1, HIDDEN, dtype=x.dtype), 1.0).to_event(2))
        b2 = pyro.sample("b2", dist.Normal(torch.zeros(1, dtype=x.dtype), 1.0).to_event(1))
        f = (torch.tanh(x @ w1.T + b1) @ w2.T + b2)[:, 0]
        pyro.sample("y", dist.Normal(f, NOISE).to_event(1), obs=y)

    pyro.set_rng_seed(0)
    kernel = NUTS(model, max_tree_depth=6)  # at most 63 leapfrog steps per iteration: enough for 16 weights
    mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, num_chains=1, disable_progbar=True)
    mcmc.run(x, y)
    s = mcmc.get_samples()
    f = torch.tanh(grid[None] @ s["w1"].transpose(1, 2) + s["b1"][:, None]) @ s["w2"].transpose(1, 2) + s["b2"][:, None]
    return f[..., 0]  # S x G


@pytest.mark.slow
def test_hmc_predictive_matches_pyro_nuts_on_a_small_bnn():
    x, y = _data()
    grid = torch.linspace(-2.5, 2.5, 6, dtype=torch.float64)[:, None]
    theirs = _pyro_predictive(x, y, grid)
    config = MethodConfig(
        hidden=(HIDDEN,),
        activation="tanh",
        noise_std=NOISE,
        prior_precision=1.0,
        hmc_chains=4,
        hmc_warmup=400,
        hmc_draws=600,
        hmc_leapfrog=20,
        train=TrainConfig(dtype="float64", seed=0),
    )
    method = build_method("hmc", config).fit(Dataset("toy", "regression", x, y, grid, torch.zeros(6)))
    ours = torch.stack([method.layout.outputs(method.draws[c], grid)[..., 0] for c in range(4)])  # C x T x G
    ess_ours = torch.tensor(effective_sample_size(ours))
    ess_theirs = torch.tensor(effective_sample_size(theirs.reshape(2, -1, 6)))  # one chain, split in two
    mean_ours, mean_theirs = ours.flatten(0, 1).mean(0), theirs.mean(0)
    sd_ours, sd_theirs = ours.flatten(0, 1).std(0), theirs.std(0)
    se = torch.sqrt(sd_ours**2 / ess_ours + sd_theirs**2 / ess_theirs)
    z = (mean_ours - mean_theirs) / se
    assert float(z.abs().max()) < 4.5, z
    # sd of an sd estimate is about sd / sqrt(2 ESS); allow 5 of those
    tol = 5 * torch.sqrt(sd_theirs**2 / (2 * ess_theirs) + sd_ours**2 / (2 * ess_ours))
    assert bool(((sd_ours - sd_theirs).abs() < tol).all()), (sd_ours, sd_theirs, tol)
    assert np.all(np.isfinite(ess_ours.numpy())) and math.isfinite(method.diagnostics["predictive_rhat_max"])
