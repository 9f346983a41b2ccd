"""CompILE / NP-CompILE fits: learning on Room, growth, checkpoints, and the shared evaluation."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

import bnpo
from bnpo.compile import CompILEConfig, CompILEModel, fit_compile, load_any_model, save_compile_model
from bnpo.fit import evaluate, training_batches


@pytest.fixture(scope="module")
def room3() -> bnpo.Dataset:
    env = gym.make("bnpo/Room-v0", n_rooms=3)
    return bnpo.collect(env, bnpo.make_expert(env, seed=0), 200, seed=0, env_id="bnpo/Room-v0")


def test_compile_learns_room3_options_well_above_chance(room3) -> None:
    """Room(3), K = 3, 40 epochs: every trajectory's goal is an option. Outcomes seen over seeds 0-4 are 1.0 (one
    option per room) or about 0.7 (two rooms share an option); one option for everything scores about 0.36."""
    config = bnpo.FitConfig(method="compile", nonparametric=False, k=3, epochs=40, batch_size=128, seed=0)
    result = fit_compile(room3, config)
    windows = training_batches(room3, config)
    scores = evaluate(result.model, windows, n_rooms=3)
    majority = np.bincount(windows["options"].reshape(-1).numpy()).max() / windows["options"].numel()
    assert majority < 0.4
    assert scores["accuracy"] >= 0.6, scores
    assert scores["rooms_covered"] >= 2, scores
    assert np.isfinite(scores["loglik_per_step"]) and scores["K"] == 3


def test_np_compile_grows_from_one_option_and_keeps_old_parameters(room3) -> None:
    config = bnpo.FitConfig(method="compile", nonparametric=True, epochs=3, batch_size=128, growth_every=1, seed=0)
    result = fit_compile(room3, config)
    ks = [record["options/K"] for record in result.history]
    assert ks[0] >= 2 and result.model.n_options == ks[-1] and result.model.prior is not None
    model = CompILEModel(CompILEConfig(obs_dim=3, n_actions=2, n_options=2, nonparametric=True, seed=3))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    new = model.add_option()
    assert model.n_options == 3 and len(new) == 5
    for name, p in model.named_parameters():
        if name in before:
            assert torch.equal(p, before[name]), name
    assert torch.all(model.z_biases[2] == 0)


def test_checkpoint_round_trip_rebuilds_the_grown_model(tmp_path) -> None:
    model = CompILEModel(CompILEConfig(obs_dim=4, n_actions=3, n_options=1, nonparametric=True, seed=1))
    model.add_option()
    model.add_option()
    path = tmp_path / "m.safetensors"
    save_compile_model(path, model)
    loaded = load_any_model(path)
    assert isinstance(loaded, CompILEModel) and loaded.n_options == 3
    states = torch.randn(5, 6, 4, generator=torch.Generator().manual_seed(0))
    actions = torch.randint(0, 3, (5, 6), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loaded.log_likelihood(states, actions), model.log_likelihood(states, actions))
    assert torch.equal(loaded.segment(states, actions)[0], model.segment(states, actions)[0])


def test_hard_segmentation_and_likelihood_of_a_scripted_model() -> None:
    """Two sub-policies that always pick action 0 / action 1: on a trajectory 0 0 0 1 1 the likelihood is
    dominated by the two-segment explanation, and the encoder's segmentation covers every step once."""
    model = CompILEModel(CompILEConfig(obs_dim=2, n_actions=2, n_options=2, max_segments=3, seed=0))
    with torch.no_grad():
        for head in model.policy.weights:
            head.zero_()
        model.policy.biases[0].copy_(torch.tensor([20.0, -20.0]))
        model.policy.biases[1].copy_(torch.tensor([-20.0, 20.0]))
    states = torch.zeros(1, 5, 2)
    actions = torch.tensor([[0, 0, 0, 1, 1]])
    loglik = float(model.log_likelihood(states, actions)[0])
    p = bnpo.compile.elbo.poisson_length_log_prior(5, 3.0).exp().tolist()  # p[l - 1] = P(L = l)
    # pure segments only: a cut at 3, plus at most one more (N = 3; the third segment takes the rest with prob. 1)
    two = p[2] * sum(p[1:]) * 0.5**2  # 000 | 11 (the second segment is cut at T: P(L >= 2))
    three = (p[0] * p[1] + p[1] * p[0] + p[2] * p[0]) * 0.5**3  # 0|00|11, 00|0|11, 000|1|1
    expected = np.log(two + three)
    assert abs(loglik - expected) < 1e-6
    options, boundaries = model.segment(states, actions)
    assert options.shape == (1, 5) and boundaries.dtype == torch.bool and not bool(boundaries[0, 0])


def test_compile_config_errors_are_one_line_user_errors(room3) -> None:
    from sixlab_shared import UserError

    for bad in ({"method": "ddo"}, {"method": "compile", "objective": "exact"}, {"compile_length_rate": 0.0}):
        with pytest.raises(UserError) as err:
            bnpo.FitConfig(**bad)
        assert "\n" not in str(err.value)
    continuous = dataclasses.replace(
        room3, actions=room3.actions.astype(np.float32)[:, None], n_actions=1, continuous=True
    )
    with pytest.raises(UserError, match="discrete actions only"):
        fit_compile(continuous, bnpo.FitConfig(method="compile", epochs=1))


def test_a_compile_model_drives_the_options_wrapper_until_the_step_cap() -> None:
    """No termination function: an option runs its greedy sub-policy until the cap (the fork's deployment)."""
    from bnpo.options import OptionsWrapper

    env = gym.make("bnpo/Room-v0", n_rooms=3)
    model = CompILEModel(CompILEConfig(obs_dim=3, n_actions=4, n_options=2, seed=0))
    wrapped = OptionsWrapper(env, model, option_steps=3)
    assert wrapped.action_space.n == 4 + 2
    wrapped.reset(seed=0)
    _, _, terminated, truncated, info = wrapped.step(4)
    assert info["steps_count"] == 3 and not (terminated or truncated)  # Room episodes last 5 steps


def test_a_nan_loss_stops_the_fit_in_one_line_and_keeps_the_last_checkpoint(room3, tmp_path, monkeypatch) -> None:
    from bnpo.fit import TrainingDiverged
    from sixlab_shared import RunDir

    calls = {"n": 0}
    original = CompILEModel.loss

    def loss_nan_after_two_epochs(self, *args, **kwargs):
        calls["n"] += 1
        out = original(self, *args, **kwargs)
        if calls["n"] > 2 * 2:  # 200 episodes, batch 128: two minibatches per epoch
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(CompILEModel, "loss", loss_nan_after_two_epochs)
    run = RunDir(tmp_path / "run")
    config = bnpo.FitConfig(method="compile", k=2, nonparametric=False, epochs=5, batch_size=128, checkpoint_every=1)
    with pytest.raises(TrainingDiverged) as err:
        fit_compile(room3, config, run=run)
    assert "\n" not in str(err.value) and "epoch 2" in str(err.value) and "after epoch 2" in str(err.value)
    assert run.load_checkpoint("last")["epoch"] == 2


def test_a_compile_checkpoint_with_bad_config_or_weights_is_a_one_line_error(tmp_path) -> None:
    from bnpo.fit import CheckpointError
    from sixlab_shared import load_checkpoint, save_checkpoint

    model = CompILEModel(CompILEConfig(obs_dim=4, n_actions=3, n_options=2, seed=1))
    path = tmp_path / "m.safetensors"
    save_compile_model(path, model)
    for corrupt, message in (
        (lambda s: s["model_config"].update(colour="blue"), "unknown model_config key(s) colour"),
        (lambda s: s.update(n_options=0), "n_options must be an integer >= 1"),
        (lambda s: s["model_config"].update(hidden=0), "invalid model_config"),
        (lambda s: s["model"].pop("head_z.weight"), "does not fit the model"),
    ):
        state = load_checkpoint(path)
        corrupt(state)
        bad = tmp_path / "bad.safetensors"
        save_checkpoint(bad, state)
        with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
            load_any_model(bad)
        assert "\n" not in str(err.value)


def test_padded_rows_are_scored_as_the_rows_cut_to_their_real_steps(monkeypatch) -> None:
    """A batch of episodes of 7, 5, 3, 1 and 2 steps padded to 7: the loss terms (noise-free relaxation), the exact
    likelihood and the segmentation equal those of each row cut to its own length, computed alone."""
    model = CompILEModel(CompILEConfig(obs_dim=3, n_actions=4, n_options=3, max_segments=4, seed=1)).double()
    lengths = [7, 5, 3, 1, 2]
    generator = torch.Generator().manual_seed(0)
    states = torch.randn(len(lengths), 7, 3, dtype=torch.float64, generator=generator)
    actions = torch.randint(0, 4, (len(lengths), 7), generator=generator)
    mask = torch.arange(7)[None, :] < torch.tensor(lengths)[:, None]
    monkeypatch.setattr(bnpo.compile.elbo, "gumbel_softmax_sample", lambda logits, tau, **_: torch.softmax(logits, -1))
    padded = model.loss(states, actions, mask, tau=1.0, n_train=10)
    alone = [
        model.loss(states[b : b + 1, :n], actions[b : b + 1, :n], tau=1.0, n_train=10) for b, n in enumerate(lengths)
    ]
    for key in ("nll", "kl_b", "kl_z", "loss"):
        expected = sum(float(row[key].detach()) for row in alone) / len(lengths)
        assert abs(float(padded[key].detach()) - expected) < 1e-10, key
    expected = torch.cat(
        [model.log_likelihood(states[b : b + 1, :n], actions[b : b + 1, :n]) for b, n in enumerate(lengths)]
    )
    torch.testing.assert_close(model.log_likelihood(states, actions, mask), expected, rtol=0, atol=1e-10)
    options, boundaries = model.segment(states, actions, mask)
    for b, n in enumerate(lengths):
        row_options, row_boundaries = model.segment(states[b : b + 1, :n], actions[b : b + 1, :n])
        assert torch.equal(options[b, :n], row_options[0]) and torch.equal(boundaries[b, :n], row_boundaries[0])
        assert torch.all(options[b, n:] == options[b, n - 1]) and not bool(boundaries[b, n:].any())
    with pytest.raises(ValueError, match="padded at the end"):
        model.log_likelihood(states, actions, mask.flip(1))


def test_compile_fits_and_scores_padded_episodes_of_several_lengths() -> None:
    """``FitConfig(method="compile", padding=True)``: whole Taxi episodes (6-18 steps) padded with a mask; BNPO's
    relaxed objective still refuses padding in one line."""
    from sixlab_shared import UserError

    env = gym.make("bnpo/TaxiHidden-v0")
    data = bnpo.collect(env, bnpo.make_expert(env, seed=0), 40, seed=0, env_id="bnpo/TaxiHidden-v0")
    assert len(set(data.episode_lengths().tolist())) > 3
    config = bnpo.FitConfig(method="compile", padding=True, k=3, epochs=2, batch_size=16, holdout_fraction=0.1)
    result = fit_compile(data, config)
    assert len(result.history) == 2 and np.isfinite(result.history[-1]["loss/total"])
    padded = training_batches(data, config)
    assert not bool(padded["mask"].all())
    scores = evaluate(result.model, padded)
    assert np.isfinite(scores["loglik_per_step"]) and 0 <= scores["accuracy"] <= 1
    lengths = padded["mask"].sum(1)
    first = int(lengths[0])
    alone = result.model.log_likelihood(padded["states"][:1, :first], padded["actions"][:1, :first])
    with_mask = result.model.log_likelihood(padded["states"][:1], padded["actions"][:1], padded["mask"][:1])
    torch.testing.assert_close(with_mask, alone, rtol=0, atol=1e-9)
    with pytest.raises(UserError, match="padding") as err:
        bnpo.FitConfig(padding=True)
    assert "\n" not in str(err.value)
