"""E1 and E2 invariants (reference §5 items 6, 7) and determinism of metrics.json (item 16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eb_ensembles.experiments.e1 import e1_problem, features, run_e1
from eb_ensembles.experiments.e2 import run_e2


def test_e1_invariants(tmp_path):
    r = run_e1(tmp_path, seed=0, members=10)
    assert r["max_residual"] <= 1e-8
    assert r["min_pairwise_param_distance"] > 1e-2
    assert r["max_pairwise_on_data_difference"] <= 1e-8  # θ_i - θ_j lies in null(Φ)
    assert r["max_abs_bma_minus_ensemble"] <= 1e-12
    assert r["max_abs_posterior_minus_prior"] <= 1e-12
    assert r["eb_gap"] == pytest.approx(0.0, abs=1e-9)
    assert r["max_distance_to_closed_form"] <= 1e-6  # GD limit = θ0 + Φ⁺(y - Φθ0) (numpy pinv)
    assert r["mean_spread_outside_data_range"] > 100 * r["max_spread_on_training_points"]
    assert (tmp_path / "e1_functions.png").stat().st_size > 1000


def test_e1_log_sup_is_the_gaussian_constant():
    p = e1_problem(0)
    phi = features(p["x"], p["freq"], p["phase"])
    assert phi.shape[1] > phi.shape[0]  # overparameterised
    r = run_e1(None, seed=0, members=3)
    n, sigma = r["n"], r["sigma"]
    assert r["log_sup"] == pytest.approx(-0.5 * n * np.log(2 * np.pi * sigma**2), abs=1e-12)
    assert r["loglik_max"] == pytest.approx(r["log_sup"], abs=1e-9)


def test_e1_metrics_json_is_deterministic(tmp_path):
    run_e1(tmp_path / "a", seed=4, members=4)
    run_e1(tmp_path / "b", seed=4, members=4)
    assert (tmp_path / "a" / "metrics.json").read_bytes() == (tmp_path / "b" / "metrics.json").read_bytes()


def test_e2_em_rises_to_log_sup(tmp_path):
    r = run_e2(tmp_path, seed=0, fast=True)
    assert r["shared_min_increment"] >= -1e-12
    assert r["kw_min_increment"] >= -1e-12
    assert r["shared_mass_on_argmax"] > 1 - 1e-6
    assert r["shared_log_marginal_final"] == pytest.approx(r["log_sup"], abs=1e-6)
    assert r["shared_posterior_minus_prior_tv"] < 1e-6  # fixed point: posterior = prior
    assert r["kw_log_marginal_final"] >= r["log_sup"] - 1e-9  # per-observation mixing can only do better
    assert {p.name for p in tmp_path.glob("*.png")} == {"e2_log_marginal.png", "e2_weights.png"}
    assert torch.isfinite(torch.tensor(r["kw_ess"]))


@pytest.mark.slow
def test_full_size_e1_e2_invariants(tmp_path):
    """The README's E1 (M = 20) and E2 (61 x 61 grid) runs satisfy the same invariants as the fast ones."""
    r1 = run_e1(tmp_path / "e1", seed=0, members=20)
    assert r1["max_residual"] <= 1e-8 and r1["eb_gap"] == pytest.approx(0.0, abs=1e-9)
    assert r1["spread_vs_population_corr"] > 0.9
    r2 = run_e2(tmp_path / "e2", seed=0)
    assert r2["shared_mass_on_argmax"] > 1 - 1e-6 and r2["shared_min_increment"] >= -1e-12
