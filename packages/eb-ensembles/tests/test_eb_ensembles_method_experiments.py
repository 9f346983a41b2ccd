"""E3, E4 and E6 on smoke budgets: files written, invariants that hold whatever the training budget."""

from __future__ import annotations

import json
import math

import pytest

from eb_ensembles.experiments import EXPERIMENTS, run_experiment
from eb_ensembles.experiments.e3 import run_e3
from eb_ensembles.experiments.e4 import run_e4
from eb_ensembles.experiments.e5 import run_e5
from eb_ensembles.experiments.e6 import run_e6


def test_e3_bands_metrics_and_hmc_diagnostics(tmp_path):
    result = run_e3(tmp_path, fast=True, members=3, methods=("ensemble", "hmc"))
    for name in ("cubic", "gap"):
        assert {f"e3_{name}_bands.png", f"e3_{name}_atoms.png"} <= {p.name for p in tmp_path.iterdir()}
        summary = result[name]["summary"]
        for method in ("ensemble", "hmc"):
            row = summary[method]
            assert 0 <= row["coverage_50"]["mean"] <= row["coverage_90"]["mean"] <= row["coverage_95"]["mean"] <= 1
            assert math.isfinite(row["nll"]["mean"]) and row["rmse"]["mean"] > 0
        diag = result[name]["hmc_diagnostics"][0]
        assert len(diag["acceptance"]) == 4 and all(0 <= a <= 1 for a in diag["acceptance"])
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["cubic"]["summary"]["hmc"]["rmse"]["n"] == 1


def test_e4_maps_and_the_one_sample_mutual_information(tmp_path):
    result = run_e4(tmp_path, fast=True, members=3, methods=("ensemble", "map"))
    assert {"e4_moons_uncertainty.png", "e4_moons_reliability.png", "e4_circles_uncertainty.png"} <= {
        p.name for p in tmp_path.iterdir()
    }
    for name in ("moons", "circles"):
        row = result[name]["per_seed"][0]
        # MAP predicts with one sample: its mutual information is 0 everywhere, so MI cannot rank OOD points
        assert row["map"]["auroc_far_mi"] == pytest.approx(0.5)
        assert 0.8 < row["ensemble"]["acc"] <= 1.0


def test_e6_posterior_ess_and_diversity_bounds(tmp_path):
    result = run_e6(tmp_path, fast=True, members=4, sizes=(60, 200))
    for wd in ("off", "on"):
        for n in ("60", "200"):
            row = result["summary"][wd][n]
            assert 1.0 - 1e-9 <= row["posterior_ess"]["mean"] <= 4 + 1e-9
            assert 0 <= row["disagreement"]["mean"] <= 1 and 0 <= row["pairwise_tv"]["mean"] <= 1
            assert row["eb_gap"]["mean"] >= -1e-9  # log-mean-exp never exceeds the max
    assert {"e6_posterior_ess.png", "e6_loglik_std.png", "e6_posterior_weights.png"} <= {
        p.name for p in tmp_path.iterdir()
    }


def test_every_experiment_is_registered_and_dispatched():
    assert set(EXPERIMENTS) == {"E1", "E2", "E3", "E4", "E5", "E6"}
    spec, result = run_experiment("e2", None, fast=True)
    assert spec.name == "E2" and result["shared_mass_on_argmax"] > 1 - 1e-6


def test_e5_over_seeds_reports_mean_and_std(tmp_path):
    result = run_e5(tmp_path, seed=3, seeds=2, fast=True, epochs=2, sizes=(1, 2), methods=("map",), hmc_reference=False)
    tables = result["per_seed_tables"]
    assert len(tables) == 2 and result["seeds"] == 2
    for method in ("single", "ensemble_M2", "map"):
        values = [t[method]["nll"] for t in tables]
        assert result["table"][method]["nll"] == pytest.approx(sum(values) / 2, rel=1e-12)
        assert result["table_std"][method]["nll"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2), rel=1e-9)
    assert tables[0] != tables[1]  # different seeds: different data splits and members
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["summary"]["map"]["acc"]["n"] == 2 and (tmp_path / "e5_digits_shift.png").is_file()
