"""Environments, experts, the collector and the .npz schema with its validation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import bnpo
from bnpo.data import Dataset, DatasetError, collect, load_dataset


@pytest.mark.parametrize("env_id", ["bnpo/Room-v0", "bnpo/Line-v0", "bnpo/Landmarks-v0"])
def test_envs_pass_the_gymnasium_checker(env_id: str) -> None:
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)


def test_room_hint_only_in_first_state_and_expert_teleports() -> None:
    env = gym.make("bnpo/Room-v0", n_rooms=4)
    obs, info = env.reset(seed=0, options={"goal": 3})
    assert obs.tolist() == [0, 0, 3] and info["option"] == 2
    rewards = []
    for _ in range(6):
        obs, reward, terminated, truncated, info = env.step(3)
        rewards.append(reward)
        assert obs[2] == -1
        if truncated:
            break
    assert truncated and obs.tolist() == [0, 3, -1]  # teleported at the top of room 0 on the 5th step
    assert rewards == [0, 0, 0, 0, 1]


def test_landmarks_expert_walks_x_first_then_y() -> None:
    env = gym.make("bnpo/Landmarks-v0")
    expert = bnpo.make_expert(env, epsilon=0.0)
    assert expert(np.array([3, 3]), {"target": (5, 1)}) == 0  # +x first
    assert expert(np.array([5, 3]), {"target": (5, 1)}) == 3  # then -y
    data = collect(env, bnpo.make_expert(env, seed=1), 20, seed=1)
    windows = data.windows()
    states, options = windows["states"].numpy(), windows["options"].numpy()
    xy = np.stack([states[..., :7].argmax(-1), states[..., 7:].argmax(-1)], -1)
    landmarks = np.array(bnpo.envs.landmarks.LANDMARKS)
    for n in range(20):  # the option switches exactly when the agent stands on the current target
        for t in range(1, 30):
            if options[n, t] != options[n, t - 1]:
                assert (xy[n, t] == landmarks[options[n, t - 1]]).all()


def test_line_switches_at_the_ends(line_data) -> None:
    windows = line_data.windows()
    pos = windows["states"].numpy().argmax(-1)
    options = windows["options"].numpy()
    switches = np.argwhere(options[:, 1:] != options[:, :-1])
    assert len(switches) > 0
    assert set(pos[switches[:, 0], switches[:, 1] + 1].tolist()) <= {0, 9}


def test_collector_works_for_any_env_and_policy_and_round_trips(tmp_path) -> None:
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(0)
    data = collect(env, lambda obs, info: int(rng.integers(0, 2)), 3, seed=0, max_steps=15, env_id="CartPole-v1")
    assert data.n_episodes == 3 and data.options is None and data.obs_dim == 4
    path = tmp_path / "cartpole.npz"
    data.save(path)
    loaded = load_dataset(path)
    np.testing.assert_array_equal(loaded.observations, data.observations)
    np.testing.assert_array_equal(loaded.actions, data.actions)
    assert loaded.env_id == "CartPole-v1" and loaded.n_actions == 2
    continuous = collect(gym.make("Pendulum-v1"), lambda obs, info: np.array([0.5], np.float32), 2, max_steps=5)
    assert continuous.continuous and continuous.actions.shape == (10, 1)


def _save(path, **arrays) -> None:
    np.savez(path, **arrays)


def _good() -> dict:
    return {
        "observations": np.zeros((6, 2), np.float32),
        "actions": np.array([0, 1, 0, 1, 0, 1]),
        "episode_starts": np.array([1, 0, 0, 1, 0, 0], bool),
        "n_actions": np.int64(2),
        "continuous": np.bool_(False),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"actions": None}, "lacks key\\(s\\) actions"),
        ({"observations": np.zeros((6,), np.float32)}, "'observations' must be a non-empty \\(S, D\\)"),
        ({"actions": np.array([0, 1, 0, 1, 0, 2])}, "'actions' must lie in \\[0, 2\\)"),
        ({"actions": np.array([0, 1, 0])}, "'actions' must have shape \\(6,\\)"),
        ({"observations": np.full((6, 2), np.nan, np.float32)}, "NaN"),
        ({"episode_starts": np.array([0, 0, 0, 1, 0, 0], bool)}, "episode_starts\\[0\\]"),
        ({"options": np.array([0, 0, -1, 0, 0, 0])}, "'options' must be >= 0"),
    ],
)
def test_bad_datasets_are_named_errors(tmp_path, change, message) -> None:
    arrays = _good()
    for key, value in change.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    path = tmp_path / "bad.npz"
    _save(path, **arrays)
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)


def test_missing_file_and_short_episodes(tmp_path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a .npz \\(zip\\) archive"):
        load_dataset(tmp_path / "junk.npz")
    data = Dataset(**{k: v for k, v in _good().items() if k not in ("n_actions", "continuous")}, n_actions=2)
    with pytest.raises(DatasetError, match="shorter than seq_len=4"):
        data.windows(4)
    with pytest.raises(DatasetError, match="seq_len must be >= 2"):
        data.windows(1)
    assert data.windows()["states"].shape == (2, 3, 2)
