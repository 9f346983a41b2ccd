"""SMDP PPO: the SMDP advantage against SB3 (n = 1) and a hand computation (n > 1); primitive-step counting."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.buffers import RolloutBuffer  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.logger import Logger  # noqa: E402

import bnpo  # noqa: E402
from bnpo.options import OptionsWrapper  # noqa: E402
from bnpo.rl import SMDPPPO, Episode, SMDPRolloutBuffer, success_auc, success_curve  # noqa: E402

SPACE = gym.spaces.Box(-1, 1, (2,))
ACTIONS = gym.spaces.Discrete(3)


def _fill(buffer, rewards, values, starts, steps=None) -> None:
    buffer.reset()
    for t in range(len(rewards)):
        kwargs = {} if steps is None else {"steps": steps[t]}
        buffer.add(
            np.zeros((buffer.n_envs, 2), np.float32),
            np.zeros((buffer.n_envs, 1)),
            np.asarray(rewards[t], np.float32),
            np.asarray(starts[t], np.float32),
            torch.as_tensor(values[t], dtype=torch.float32),
            torch.zeros(buffer.n_envs),
            **kwargs,
        )


def test_one_step_decisions_equal_sb3() -> None:
    rng = np.random.default_rng(0)
    size, n_envs = 16, 3
    rewards, values = rng.normal(size=(size, n_envs)), rng.normal(size=(size, n_envs))
    starts = rng.random((size, n_envs)) < 0.2
    last, dones = torch.as_tensor(rng.normal(size=n_envs), dtype=torch.float32), np.array([True, False, False])
    ours = SMDPRolloutBuffer(size, SPACE, ACTIONS, n_envs=n_envs, gamma=0.97, gae_lambda=0.9)
    sb3 = RolloutBuffer(size, SPACE, ACTIONS, n_envs=n_envs, gamma=0.97, gae_lambda=0.9)
    _fill(ours, rewards, values, starts, steps=np.ones((size, n_envs)))
    _fill(sb3, rewards, values, starts)
    ours.compute_returns_and_advantage(last, dones)
    sb3.compute_returns_and_advantage(last, dones)
    np.testing.assert_allclose(ours.advantages, sb3.advantages, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.returns, sb3.returns, rtol=1e-6, atol=1e-6)


def test_smdp_advantage_by_hand() -> None:
    # one env, four decisions lasting 3, 1, 5, 2 primitive steps; an episode starts at decision 2 (so decision 1
    # ended its episode); the rollout ends mid-episode with V(last) = 0.7.
    g, lam = 0.9, 0.8
    r, v, n = [1.0, 0.5, 2.0, -1.0], [0.3, 0.1, 0.4, -0.2], [3, 1, 5, 2]
    starts = [True, False, True, False]
    buffer = SMDPRolloutBuffer(4, SPACE, ACTIONS, n_envs=1, gamma=g, gae_lambda=lam)
    _fill(buffer, [[x] for x in r], [[x] for x in v], [[s] for s in starts], steps=[[k] for k in n])
    buffer.compute_returns_and_advantage(torch.tensor([0.7]), np.array([False]))
    d3 = r[3] + g**2 * 0.7 - v[3]
    d2 = r[2] + g**5 * v[3] - v[2]
    d1 = r[1] + 0.0 - v[1]  # episode end: no bootstrap
    d0 = r[0] + g**3 * v[1] - v[0]
    a3 = d3
    a2 = d2 + (g * lam) ** 5 * a3
    a1 = d1
    a0 = d0 + (g * lam) ** 3 * a1
    np.testing.assert_allclose(buffer.advantages[:, 0], [a0, a1, a2, a3], rtol=1e-6)
    np.testing.assert_allclose(buffer.returns[:, 0], np.add([a0, a1, a2, a3], v), rtol=1e-6)


def test_ppo_with_one_step_decisions_is_sb3_ppo() -> None:
    """Same seed, primitive actions only: SMDPPPO's parameters after training equal PPO's."""
    kwargs = {"n_steps": 32, "batch_size": 16, "n_epochs": 2, "seed": 3, "device": "cpu"}
    models = []
    for cls in (SMDPPPO, PPO):
        env = make_vec_env(lambda: gym.make("bnpo/LandmarksGoal-v0"), n_envs=2, seed=3)
        model = cls("MlpPolicy", env, **kwargs)
        model.set_logger(Logger(folder=None, output_formats=[]))  # plain PPO would leave an SB3-* folder in /tmp
        model.learn(128)
        models.append(model)
    for a, b in zip(models[0].policy.parameters(), models[1].policy.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert models[0].primitive_steps == models[0].num_timesteps == 128


def test_primitive_steps_are_counted_with_options() -> None:
    model = bnpo.OptionModel(bnpo.OptionModelConfig(obs_dim=14, n_actions=5, n_options=3, seed=0))
    counts = []

    def make():
        env = gym.make("bnpo/LandmarksGoal-v0")
        inner = env.unwrapped
        original = inner.step

        def counting(action):
            counts.append(1)
            return original(action)

        inner.step = counting
        return OptionsWrapper(env, model, option_steps=6)

    env = make_vec_env(make, n_envs=2, seed=0)
    agent = SMDPPPO("MlpPolicy", env, n_steps=32, batch_size=16, n_epochs=1, seed=0, device="cpu", primitive_budget=300)
    agent.learn(10_000)
    assert agent.primitive_steps == len(counts) >= 300
    assert agent.num_timesteps < agent.primitive_steps  # options last more than one step
    if agent.episodes:
        assert all(1 <= e.length <= 20 for e in agent.episodes)
        steps = [e.primitive_steps for e in agent.episodes]
        assert steps == sorted(steps) and steps[-1] <= agent.primitive_steps


def test_success_curve_and_auc() -> None:
    episodes = [
        Episode(10, 10, 10, 0.0, False),
        Episode(30, 30, 20, 1.0, True),
        Episode(35, 35, 5, 1.0, True),
        Episode(90, 90, 50, 0.0, False),
    ]
    ends, rates = success_curve(episodes, budget=100, bins=4)
    np.testing.assert_array_equal(ends, [25, 50, 75, 100])
    np.testing.assert_allclose(rates, [0.0, 1.0, 1.0, 0.0])  # bin 3 (50, 75] is empty: carries bin 2's rate
    assert success_auc(episodes, 100, bins=4) == pytest.approx(0.5)


def test_rl_cli_writes_curves_and_rejects_mismatched_models(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from bnpo.cli import app
    from bnpo.fit import save_model

    runner = CliRunner()
    good = tmp_path / "landmarks.safetensors"
    save_model(good, bnpo.OptionModel(bnpo.OptionModelConfig(obs_dim=14, n_actions=5, n_options=4, seed=1)))
    room = tmp_path / "room.safetensors"
    save_model(room, bnpo.OptionModel(bnpo.OptionModelConfig(obs_dim=3, n_actions=7, n_options=6)))
    out = tmp_path / "rl"
    args = ["rl", "bnpo/LandmarksGoal-v0", "--out", str(out), "--seeds", "2", "--steps", "300"]
    result = runner.invoke(app, [*args, "--options", str(good)])
    assert result.exit_code == 0, result.output
    assert "auc_options" in result.output and "auc_primitive" in result.output
    curves = json.loads((out / "curves.json").read_text())
    assert [r["seed"] for r in curves["options"]["runs"]] == [0, 1]
    assert all(r["primitive_steps"] >= 300 for r in curves["primitive"]["runs"])
    assert (out / "curves.png").stat().st_size > 1000 and (out / "summary.json").is_file()
    for bad, message in (
        ([*args, "--options", str(room)], "n_actions=7 but the environment has 5 actions"),
        ([*args, "--options", str(room), "--env-kwargs", '{"memoryless": false}'], "n_actions=7"),
        ([*args, "--no-options", "--options", str(good)], "exactly one of --options MODEL or --no-options"),
        ([*args, "--no-options", "--steps", "0"], "invalid rl option steps=0"),
        ([*args, "--no-options", "--batch-size", "600"], "must be <= n_steps x n_envs = 512"),
        ([*args, "--options", str(tmp_path / "none")], "neither a checkpoint"),
        ([*args[:3], str(tmp_path / "c"), *args[4:], "--no-options", "--control"], "--control compares"),
        ([*args, "--no-options"], "already holds a run"),
    ):
        result = runner.invoke(app, bad)
        assert result.exit_code == 2 and message in result.stderr, (bad, result.output)
    small = bnpo.OptionModel(bnpo.OptionModelConfig(obs_dim=14, n_actions=4, n_options=2))
    save_model(tmp_path / "four.safetensors", small)  # the 4-action (memoryless=False) Landmarks
    fresh = tmp_path / "fresh"
    result = runner.invoke(
        app, ["rl", "bnpo/LandmarksGoal-v0", "--out", str(fresh), "--options", str(tmp_path / "four.safetensors")]
    )
    assert result.exit_code == 2 and "n_actions=4 but the environment has 5 actions" in result.stderr
    assert not fresh.exists() and not (tmp_path / "c").exists()
    control = ["rl", "bnpo/LandmarksGoal-v0", "--out", str(fresh), "--seeds", "1", "--steps", "200"]
    result = runner.invoke(app, [*control, "--options", str(good), "--no-baseline", "--control"])
    assert result.exit_code == 0, result.output
    assert "auc_untrained_options" in result.output and "auc_primitive" not in result.output
    summary = json.loads((fresh / "summary.json").read_text())
    assert set(summary) >= {"options", "untrained_options"} and "primitive" not in summary


def test_learning_leaves_no_sb3_folder_in_the_temp_dir(tmp_path, monkeypatch) -> None:
    """SB3's default logger makes an empty ``<tempdir>/SB3-<date-time>`` folder on every ``learn``; ours makes none
    (and plain PPO, the control, does make one, so the test would see the folder)."""
    import tempfile

    from bnpo.downstream import DownstreamConfig, train_agent

    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    model = bnpo.OptionModel(bnpo.OptionModelConfig(obs_dim=14, n_actions=5, n_options=2, seed=0))
    config = DownstreamConfig(steps=64, seeds=[0], n_envs=2, n_steps=16, batch_size=16)
    train_agent("bnpo/LandmarksGoal-v0", model, 0, config)
    train_agent("bnpo/LandmarksGoal-v0", None, 0, config)
    assert list(temp.glob("SB3-*")) == []  # (torch may put its own torchinductor_<user> cache there)
    env = make_vec_env(lambda: gym.make("bnpo/LandmarksGoal-v0"), n_envs=1, seed=0)
    PPO("MlpPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu").learn(16)
    assert len(list(temp.glob("SB3-*"))) == 1
