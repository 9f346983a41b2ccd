"""Determinism, save/load of a grown model, exact resume, a short Line fit (reference §6 items 10, 13), split trials."""

from __future__ import annotations

import pytest
import torch

from bnpo.fit import FitConfig, evaluate, fit, load_model, save_model, selection_score
from sixlab_shared import RunDir, UserError


def _config(**overrides) -> FitConfig:
    base = {"epochs": 12, "batch_size": 64, "growth_every": 2, "seed": 3, "checkpoint_every": 5}
    return FitConfig(**{**base, **overrides})


def test_same_seed_same_losses_and_k(room_data) -> None:
    first = fit(room_data, _config(epochs=6))
    second = fit(room_data, _config(epochs=6))
    assert [r["loss/total"] for r in first.history] == [r["loss/total"] for r in second.history]
    assert first.model.n_options == second.model.n_options > 1
    other = fit(room_data, _config(epochs=2, seed=4))
    assert [r["loss/total"] for r in other.history] != [r["loss/total"] for r in first.history][:2]


def test_save_load_rebuilds_the_grown_model(room_data, tmp_path) -> None:
    result = fit(room_data, _config(epochs=7))
    model = result.model
    assert model.n_options > 1
    save_model(tmp_path / "model.safetensors", model)
    loaded = load_model(tmp_path / "model.safetensors")
    assert loaded.n_options == model.n_options
    windows = room_data.windows()
    torch.testing.assert_close(
        loaded.log_likelihood(windows["states"], windows["actions"]),
        model.log_likelihood(windows["states"], windows["actions"]),
        rtol=0,
        atol=0,
    )
    for k in range(model.n_options):
        assert torch.equal(loaded.act(windows["states"][:, 0], k), model.act(windows["states"][:, 0], k))


def test_resume_is_exact(room_data, tmp_path) -> None:
    straight = fit(room_data, _config(epochs=6))
    run = RunDir(tmp_path / "run")
    run.write_config({}, seed=0)
    fit(room_data, _config(epochs=5), run=run)
    resumed = fit(room_data, _config(epochs=6), run=RunDir(tmp_path / "run", resume=True), resume=True)
    assert [r["loss/total"] for r in resumed.history] == [r["loss/total"] for r in straight.history]
    assert resumed.model.n_options == straight.model.n_options
    for (name, p), (_, q) in zip(resumed.model.named_parameters(), straight.model.named_parameters(), strict=True):
        assert torch.equal(p, q), name


def test_checkpoint_mismatch_is_a_named_error(room_data, tmp_path) -> None:
    run = RunDir(tmp_path / "run")
    run.write_config({}, seed=0)
    fit(room_data, _config(epochs=5), run=run)
    with pytest.raises(UserError, match="changed: encoder_hidden 32 -> 8"):
        fit(room_data, _config(epochs=6, encoder_hidden=8), run=RunDir(tmp_path / "run", resume=True), resume=True)
    state = run.load_checkpoint()
    state["n_options"] = state["n_options"] + 1
    save_model_path = tmp_path / "bad.safetensors"
    from sixlab_shared import save_checkpoint

    save_checkpoint(save_model_path, state)
    with pytest.raises(UserError, match="does not fit the model: missing"):
        load_model(save_model_path)


def test_line_short_fit_recovers_both_directions(line_data) -> None:
    config = FitConfig(nonparametric=False, k=2, epochs=30, batch_size=16, holdout_fraction=0.0, seed=0)
    result = fit(line_data, config)
    scores = evaluate(result.model, line_data.windows())
    assert scores["accuracy"] >= 0.85 and scores["boundary_f1"] >= 0.6, scores  # short smoke fit; slow test: 0.95


def test_copy_option_duplicates_one_option_only(tiny_model) -> None:
    states, actions = torch.randn(4, 6, 3), torch.randint(0, 2, (4, 6))
    before = tiny_model.log_pi(states, actions).clone(), tiny_model.beta(states).clone()
    tiny_model.add_option()
    tiny_model.copy_option(0, 2)
    log_pi, beta = tiny_model.log_pi(states, actions), tiny_model.beta(states)
    torch.testing.assert_close(log_pi[..., 2], log_pi[..., 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(beta[..., 2], beta[..., 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(log_pi[..., :2], before[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(beta[..., :2], before[1], rtol=0, atol=1e-6)
    tiny_model.copy_option(1, 2, noise=0.05, generator=torch.Generator().manual_seed(0))
    gap = (tiny_model.log_pi(states, actions)[..., 2] - tiny_model.log_pi(states, actions)[..., 1]).abs().max()
    assert 0 < gap < 0.5
    with pytest.raises(ValueError, match="distinct options"):
        tiny_model.copy_option(1, 1)


SPLIT = {"nonparametric": False, "k": 5, "split_epochs": [4], "split_trial_epochs": 2}  # Room(3), 5 options


def test_split_trial_keeps_the_branch_with_the_higher_likelihood(room_data) -> None:
    result = fit(room_data, _config(epochs=7, **SPLIT))
    trial = result.history[4]["split"]
    assert [r["epoch"] for r in result.history] == list(range(7))
    # replay both branches by hand: plain 6 epochs, and 4 epochs + the move + 2 epochs
    windows = room_data.windows()
    states, actions = windows["states"][result.train_index], windows["actions"][result.train_index]
    plain = fit(room_data, _config(epochs=6, nonparametric=False, k=5))
    assert trial["loglik_per_step_plain"] == pytest.approx(selection_score(plain.model, states, actions), abs=1e-12)
    assert trial["loglik_per_step_split"] != trial["loglik_per_step_plain"]
    assert trial["accepted"] == (trial["loglik_per_step_split"] > trial["loglik_per_step_plain"])
    plain7 = [r["loss/total"] for r in fit(room_data, _config(epochs=7, nonparametric=False, k=5)).history]
    losses = [r["loss/total"] for r in result.history]
    assert losses[:4] == plain7[:4]
    assert (losses[4:] == plain7[4:]) == (not trial["accepted"])  # a rejected trial continues the plain branch
    first = fit(room_data, _config(epochs=4, nonparametric=False, k=5))
    counts = torch.bincount(first.model.segment(states, actions)[0].reshape(-1), minlength=5)
    assert (trial["source"], trial["target"]) == (int(counts.argmax()), int(counts.argmin()))


def test_split_trial_skipped_when_every_option_is_used(room_data) -> None:
    config = {**SPLIT, "k": 2, "growth_tol": 1e-6}  # two options on three rooms: both used
    with_trial = fit(room_data, _config(epochs=6, **config))
    without = fit(room_data, _config(epochs=6, **{**config, "split_epochs": []}))
    assert "split" not in with_trial.history[4]
    assert [r["loss/total"] for r in with_trial.history] == [r["loss/total"] for r in without.history]


def test_resume_across_a_split_trial_is_exact(room_data, tmp_path) -> None:
    straight = fit(room_data, _config(epochs=8, **SPLIT))
    run = RunDir(tmp_path / "run")
    run.write_config({}, seed=0)
    fit(room_data, _config(epochs=4, **SPLIT), run=run)
    resumed = fit(room_data, _config(epochs=8, **SPLIT), run=RunDir(tmp_path / "run", resume=True), resume=True)
    assert [r["loss/total"] for r in resumed.history] == [r["loss/total"] for r in straight.history]
    assert resumed.history[4]["split"] == straight.history[4]["split"]
    for (name, p), (_, q) in zip(resumed.model.named_parameters(), straight.model.named_parameters(), strict=True):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("max_norm", [0.5, 5.0, 1e3])
def test_clip_grad_norm_matches_torch(max_norm: float) -> None:
    from bnpo.fit import clip_grad_norm

    generator = torch.Generator().manual_seed(3)
    shapes = [(16, 3), (16,), (7, 16), (7,), (2,), ()]
    ours = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    ref = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    for a, b in zip(ours, ref, strict=True):
        a.grad = torch.randn(a.shape, generator=generator)
        b.grad = a.grad.clone()
    total = clip_grad_norm(ours, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(ref, max_norm)
    assert float(total) == pytest.approx(float(expected), rel=1e-6)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7)
