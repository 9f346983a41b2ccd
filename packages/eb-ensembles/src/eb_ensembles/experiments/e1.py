"""E1: exact empirical Bayes on overparameterised random-features regression (d > n).

Model: ``y = φ(x)ᵀθ + ε``, ``ε ~ N(0, σ²)`` with σ fixed, ``φ`` d random Fourier features, d > n. Every
interpolating θ attains ``L* = (2πσ²)^{-n/2}``, so Θ* is the affine set ``{θ : Φθ = y}``. Each member runs full-batch
gradient descent on the squared loss from its own ``θ_0 ~ N(0, I)``; it converges to the projection
``θ_0 + Φ⁺(y - Φθ_0)``, so members differ only in ``null(Φ)``. All atoms are maximisers: the EB gap is 0, the
posterior equals the prior, the BMA equals the ensemble mean, and the off-data spread comes from the atoms alone.

Population check: with ``θ_0 ~ N(0, I)`` the law of the converged θ is ``N(Φ⁺y, I - Φ⁺Φ)``, whose predictive at x
has standard deviation ``sqrt(φ(x)ᵀ(I - Φ⁺Φ)φ(x))``: exactly the noise-free Bayesian linear-regression posterior
under the prior ``N(0, I)``. The finite ensemble's spread is a Monte Carlo estimate of it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eb_ensembles.eb import PointMassPrior
from eb_ensembles.plots import plot_function_draws
from sixlab_shared import atomic_write_json, derive_seed, make_generator

logger = logging.getLogger(__name__)

__all__ = ["E1Result", "e1_problem", "run_e1"]

E1Result = dict[str, Any]


def e1_problem(seed: int, *, n: int = 12, d: int = 200, sigma: float = 0.1) -> dict[str, torch.Tensor | float]:
    """The E1 data and features (float64): ``x (n,)``, ``y (n,)``, frequencies and phases of φ, σ."""
    g = make_generator(derive_seed(seed, "e1", "data"))
    # evenly spaced with a small jitter: no two inputs nearly coincide, so Φ is well conditioned and GD converges
    x = torch.linspace(-2, 2, n, dtype=torch.float64) + 0.05 * (torch.rand(n, generator=g, dtype=torch.float64) - 0.5)
    y = torch.sin(2 * x) + sigma * torch.randn(n, generator=g, dtype=torch.float64)
    freq = 3.0 * torch.randn(d, generator=g, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(d, generator=g, dtype=torch.float64)
    return {"x": x, "y": y, "freq": freq, "phase": phase, "sigma": sigma}


def features(x: torch.Tensor, freq: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """Random Fourier features ``φ(x) = sqrt(2/d) cos(ω x + b)``: ``(N,) → (N, d)``."""
    return math.sqrt(2.0 / freq.shape[0]) * torch.cos(x[:, None] * freq[None] + phase[None])


def gradient_descent(
    phi: torch.Tensor, y: torch.Tensor, theta0: torch.Tensor, *, tol: float = 1e-11, max_steps: int = 200_000
) -> tuple[torch.Tensor, int]:
    """Full-batch gradient descent on ``½‖Φθ - y‖²`` for all members at once: ``θ0 (M, d) → θ (M, d)``, steps.

    Step size ``1/λ_max(ΦᵀΦ)``; stops when the largest absolute residual is below ``tol``.
    """
    lr = 1.0 / float(torch.linalg.matrix_norm(phi, ord=2) ** 2)
    theta = theta0.clone()
    for step in range(1, max_steps + 1):
        residual = theta @ phi.T - y[None]  # M x n
        if float(residual.abs().max()) < tol:
            return theta, step
        theta = theta - lr * residual @ phi
    logger.warning("E1 gradient descent stopped at max_steps=%d, residual %.3g", max_steps, float(residual.abs().max()))
    return theta, max_steps


def run_e1(out: Path | None = None, *, seed: int = 0, members: int = 20, fast: bool = False) -> E1Result:
    """Run E1 and return its metrics (and write ``metrics.json`` + ``e1_functions.png`` under ``out``).

    Args:
        out: output folder (None: compute only).
        seed: seed for data, features and member initialisations.
        members: ensemble size M.
        fast: at most 10 members, for smoke tests.

    Returns:
        A JSON-ready dict; see the keys in the README (EB gap, posterior-vs-prior weights, BMA-vs-ensemble,
        residuals, null-space checks, on- and off-data spread, agreement with the population predictive).
    """
    members = min(members, 10) if fast else members
    problem = e1_problem(seed)
    x, y, sigma = problem["x"], problem["y"], float(problem["sigma"])
    phi = features(x, problem["freq"], problem["phase"])  # n x d
    n, d = phi.shape
    g = make_generator(derive_seed(seed, "e1", "init"))
    theta0 = torch.randn(members, d, generator=g, dtype=torch.float64)
    theta, steps = gradient_descent(phi, y, theta0)

    # closed form of the GD limit (independent of the iteration): θ0 + Φ⁺(y - Φθ0), with numpy's pinv
    pinv = torch.from_numpy(np.linalg.pinv(phi.numpy()))
    closed = theta0 + (y[None] - theta0 @ phi.T) @ pinv.T
    residual = (theta @ phi.T - y[None]).abs().max(1).values  # M
    loglik = -0.5 * n * math.log(2 * math.pi * sigma**2) - 0.5 * ((theta @ phi.T - y[None]) ** 2).sum(1) / sigma**2
    log_sup = -0.5 * n * math.log(2 * math.pi * sigma**2)

    prior = PointMassPrior.uniform(members, theta)
    posterior = prior.posterior(loglik)
    diffs = theta[:, None] - theta[None]  # M x M x d
    off_diag = ~torch.eye(members, dtype=torch.bool)
    pair_dist = diffs.norm(dim=-1)[off_diag]
    on_data_diff = (diffs @ phi.T).norm(dim=-1)[off_diag]

    x_grid = torch.linspace(-4, 4, 161, dtype=torch.float64)
    phi_grid = features(x_grid, problem["freq"], problem["phase"])
    draws = theta @ phi_grid.T  # M x G
    ens_mean = draws.mean(0)
    bma_mean = (posterior.weights[:, None] * draws).sum(0)
    spread = draws.std(0, correction=1)
    projector = torch.eye(d, dtype=torch.float64) - pinv @ phi
    population_std = torch.einsum("gd,de,ge->g", phi_grid, projector, phi_grid).clamp_min(0).sqrt()
    inside = (x_grid >= float(x.min())) & (x_grid <= float(x.max()))
    train_spread = (theta @ phi.T).std(0, correction=1)

    result: E1Result = {
        "experiment": "E1",
        "seed": seed,
        "n": n,
        "d": d,
        "members": members,
        "sigma": sigma,
        "gd_steps": steps,
        "max_residual": float(residual.max()),
        "max_distance_to_closed_form": float((theta - closed).abs().max()),
        "log_sup": log_sup,
        "loglik_min": float(loglik.min()),
        "loglik_max": float(loglik.max()),
        "log_marginal": float(prior.log_marginal_likelihood(loglik)),
        "eb_gap": prior.eb_gap(loglik, log_sup=log_sup),
        "max_abs_posterior_minus_prior": float((posterior.weights - prior.weights).abs().max()),
        "posterior_ess": posterior.ess(),
        "max_abs_bma_minus_ensemble": float((bma_mean - ens_mean).abs().max()),
        "min_pairwise_param_distance": float(pair_dist.min()),
        "max_pairwise_on_data_difference": float(on_data_diff.max()),
        "max_spread_on_training_points": float(train_spread.max()),
        "mean_spread_inside_data_range": float(spread[inside].mean()),
        "mean_spread_outside_data_range": float(spread[~inside].mean()),
        "population_std_outside": float(population_std[~inside].mean()),
        "spread_vs_population_corr": float(np.corrcoef(spread.numpy(), population_std.numpy())[0, 1]),
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        plot_function_draws(
            out / "e1_functions.png",
            x_grid.numpy(),
            draws.numpy(),
            x.numpy(),
            y.numpy(),
            band=((ens_mean - 2 * population_std).numpy(), (ens_mean + 2 * population_std).numpy()),
            band_label="population ±2σ (Bayes, prior N(0, I))",
            title=f"E1: {members} interpolating members (atoms of the EB prior)",
        )
        atomic_write_json(out / "metrics.json", result)
    return result
