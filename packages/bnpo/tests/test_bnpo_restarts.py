"""Random restarts with unsupervised selection by the exact log-likelihood (``FitConfig.restarts``)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bnpo.cli import app
from bnpo.fit import FitConfig, fit
from bnpo.hmm import brute_force_log_likelihood
from sixlab_shared import UserError, derive_seed

runner = CliRunner()


def _brute_loglik_per_step(model, states: torch.Tensor, actions: torch.Tensor) -> float:
    """Independent of the forward algorithm: enumerate every (terminations, options) path."""
    with torch.no_grad():
        log_pi = model.log_pi(states, actions).double()
        log_beta, _ = model.log_beta(states)
        eta = model.prior.mean_eta().double()
        loglik = brute_force_log_likelihood(log_pi, log_beta.double(), eta.log())
    return float(loglik.mean()) / states.shape[1]


def _matrix_loglik_per_step(model, states: torch.Tensor, actions: torch.Tensor) -> float:
    """Independent of the forward algorithm: float64 numpy K x K transition-matrix products."""
    with torch.no_grad():
        pi = model.log_pi(states, actions).double().exp().numpy()  # (B, T, K)
        beta = model.log_beta(states)[0].double().exp().numpy()  # (B, T, K)
        eta = model.prior.mean_eta().double().numpy()
    alpha = eta * pi[:, 0]
    for t in range(1, pi.shape[1]):
        transition = beta[:, t, :, None] * eta[None, None, :] + (1 - beta[:, t, :, None]) * np.eye(len(eta))
        alpha = np.einsum("bi,bij->bj", alpha, transition) * pi[:, t]
    return float(np.log(alpha.sum(-1)).mean()) / pi.shape[1]


def test_selection_keeps_the_restart_with_the_highest_exact_loglik(room_data) -> None:
    config = FitConfig(nonparametric=False, k=2, epochs=4, batch_size=64, holdout_fraction=0.05, restarts=3, seed=3)
    result = fit(room_data, config)
    windows = room_data.windows()
    held = result.heldout_index
    assert len(held) == 10 and len(result.selection) == len(result.candidates) == 3
    independent = [
        _brute_loglik_per_step(model, windows["states"][held], windows["actions"][held]) for model in result.candidates
    ]
    for entry, value in zip(result.selection, independent, strict=True):
        assert entry["score_set"] == "heldout"
        assert entry["loglik_per_step"] == pytest.approx(value, abs=1e-6)  # float32 log(1 - beta) in ours
    assert len({round(v, 6) for v in independent}) == 3  # the restarts really differ
    best = max(range(3), key=independent.__getitem__)
    assert [e["selected"] for e in result.selection] == [r == best for r in range(3)]
    assert result.model is result.candidates[best]
    assert result.run_seed == derive_seed(3, "restart", best) == result.selection[best]["seed"]
    assert len(result.history) == 4
    on_train = fit(room_data, dataclasses.replace(config, restart_select="train"))
    train = result.train_index
    independent = [
        _matrix_loglik_per_step(model, windows["states"][train], windows["actions"][train])
        for model in on_train.candidates
    ]
    assert [e["loglik_per_step"] for e in on_train.selection] == pytest.approx(independent, abs=1e-6)
    assert all(e["score_set"] == "train" for e in on_train.selection)
    assert on_train.model is on_train.candidates[max(range(3), key=independent.__getitem__)]


def test_warmup_restarts_retrain_the_kept_seed_to_all_epochs(room_data) -> None:
    base = {"batch_size": 64, "growth_every": 2, "holdout_fraction": 0.0, "seed": 5, "restarts": 2}
    warm = fit(room_data, FitConfig(epochs=5, restart_epochs=2, **base))
    short = fit(room_data, FitConfig(epochs=2, **base))
    assert [e["loglik_per_step"] for e in warm.selection] == [e["loglik_per_step"] for e in short.selection]
    assert all(e["score_set"] == "train" for e in warm.selection)
    assert len(warm.history) == 5 and warm.run_seed == short.run_seed
    assert [r["loss/total"] for r in warm.history[:2]] == [r["loss/total"] for r in short.history]


def test_one_restart_is_the_plain_fit(room_data) -> None:
    config = FitConfig(epochs=3, batch_size=64, seed=2)
    result = fit(room_data, config)
    assert result.selection == [] and result.run_seed == 2 and config.restart_seed(0) == 2
    with pytest.raises(UserError, match="restarts"):
        FitConfig(restarts=0)
    with pytest.raises(UserError, match="restart_select"):
        FitConfig(restart_select="truth")


def test_cli_restarts_option(tmp_path) -> None:
    data = tmp_path / "room.npz"
    args = ["collect", "bnpo/Room-v0", "--out", str(data), "--episodes", "40", "--env-kwargs", '{"n_rooms": 3}']
    assert runner.invoke(app, args, catch_exceptions=False).exit_code == 0
    run = tmp_path / "run"
    args = ["fit", str(data), "--out", str(run), "--epochs", "3", "--restarts", "2", "--holdout", "0.1"]
    args += ["--restart-select", "train"]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "restart_kept" in result.output
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["restarts"]) == 2 and sum(r["selected"] for r in summary["restarts"]) == 1
    assert all(r["score_set"] == "train" for r in summary["restarts"])
    assert json.loads((run / "config.json").read_text())["config"]["fit"]["restarts"] == 2
    assert (run / "checkpoints" / "last.safetensors").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    resumed = runner.invoke(
        app,
        [
            "fit",
            str(data),
            "--out",
            str(run),
            "--epochs",
            "4",
            "--restarts",
            "2",
            "--holdout",
            "0.1",
            "--restart-select",
            "train",
            "--resume",
        ],
    )
    assert resumed.exit_code == 0, resumed.output
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 4
    bad = runner.invoke(app, ["fit", str(data), "--out", str(tmp_path / "bad"), "--restarts", "0"])
    assert bad.exit_code == 2 and "invalid fit option restarts=0" in bad.output
    assert not (tmp_path / "bad").exists()
