"""The options wrapper against hand-rolled episodes: discounted inner return, step counts, β / cap / episode end."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest
import torch

import bnpo
from bnpo.options import OptionsWrapper
from sixlab_shared import UserError


class Corridor(gym.Env):
    """Positions 0..19 (Discrete obs); action 0: +1, 1: -1 (floored at 0); reward = the new position; terminated at
    ``end``."""

    def __init__(self, end: int = 10) -> None:
        self.observation_space = gym.spaces.Discrete(20)
        self.action_space = gym.spaces.Discrete(2)
        self.end = end
        self.pos = 0
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = int((options or {}).get("start", 0))
        return self.pos, {}

    def step(self, action):
        self.steps += 1
        self.pos = self.pos + 1 if int(action) == 0 else max(self.pos - 1, 0)
        return self.pos, float(self.pos), self.pos >= self.end, False, {"pos": self.pos}


@dataclass
class _Config:
    obs_dim: int = 20
    n_actions: int = 2
    continuous: bool = False


class ScriptedOptions:
    """Two options on the corridor: 0 walks right and terminates (β = 1) at positions >= 5; 1 walks left, never
    terminates. Reads the one-hot encoding the wrapper must produce."""

    config = _Config()
    n_options = 2

    def eval(self):
        return self

    def act(self, state, option, greedy=True):
        assert state.shape == (20,) and float(state.sum()) == 1.0  # one-hot, as at fit time
        return torch.tensor(0 if int(option) == 0 else 1)

    def terminates(self, state, option):
        pos = int(state.argmax())
        return torch.tensor(1.0 if int(option) == 0 and pos >= 5 else 0.0)


def _hand_return(rewards, gamma):
    return sum(gamma**i * r for i, r in enumerate(rewards))


def test_primitive_action_is_one_step() -> None:
    env = OptionsWrapper(Corridor(), ScriptedOptions(), gamma=0.9)
    assert env.action_space == gym.spaces.Discrete(4)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(0)
    assert (obs, reward, terminated, info["steps_count"], info["option"]) == (1, 1.0, False, 1, -1)


def test_option_stops_when_beta_fires() -> None:
    env = OptionsWrapper(Corridor(), ScriptedOptions(), gamma=0.9, option_steps=15)
    env.reset(seed=0, options={"start": 1})
    obs, reward, terminated, truncated, info = env.step(2)  # option 0 from 1: 2, 3, 4, 5 (beta fires at 5)
    assert obs == 5 and info["steps_count"] == 4 and info["option"] == 0
    assert reward == pytest.approx(_hand_return([2, 3, 4, 5], 0.9), abs=1e-12)
    assert info["option_rewards"] == [2.0, 3.0, 4.0, 5.0] and not terminated


def test_option_stops_at_the_step_cap() -> None:
    env = OptionsWrapper(Corridor(), ScriptedOptions(), gamma=0.95, option_steps=3)
    env.reset(seed=0, options={"start": 8})
    obs, reward, *_, info = env.step(3)  # option 1 (left, never terminates): 7, 6, 5, capped at 3 steps
    assert obs == 5 and info["steps_count"] == 3
    assert reward == pytest.approx(_hand_return([7, 6, 5], 0.95), abs=1e-12)


def test_episode_end_inside_an_option() -> None:
    base = Corridor(end=4)
    env = OptionsWrapper(base, ScriptedOptions(), gamma=0.99, option_steps=15)
    env.reset(seed=0, options={"start": 1})  # option 0 would stop at 5; the episode ends at 4 first
    obs, reward, terminated, truncated, info = env.step(2)
    assert terminated and obs == 4 and info["steps_count"] == 3 and base.steps == 3
    assert reward == pytest.approx(_hand_return([2, 3, 4], 0.99), abs=1e-12)
    # truncation by a TimeLimit inside an option
    limited = OptionsWrapper(gym.wrappers.TimeLimit(Corridor(end=19), 4), ScriptedOptions(), option_steps=15)
    limited.reset(seed=0, options={"start": 10})
    _, _, terminated, truncated, info = limited.step(3)
    assert truncated and not terminated and info["steps_count"] == 4


def test_steps_count_sums_to_the_true_number_of_env_steps() -> None:
    env = gym.make("bnpo/Landmarks-v0")  # MultiDiscrete observations, raw from the env
    model = bnpo.OptionModel(bnpo.OptionModelConfig(obs_dim=14, n_actions=5, n_options=3, seed=4))
    wrapped = OptionsWrapper(env, model, option_steps=6, beta_threshold=None)
    counter = {"n": 0}
    original = env.unwrapped.step

    def counting_step(action):
        counter["n"] += 1
        return original(action)

    env.unwrapped.step = counting_step
    wrapped.reset(seed=3)
    rng = np.random.default_rng(0)
    total, done = 0, False
    while not done:
        _, _, terminated, truncated, info = wrapped.step(int(rng.integers(0, 8)))
        assert 1 <= info["steps_count"] <= 6
        total += info["steps_count"]
        done = terminated or truncated
    assert total == counter["n"] == 30  # the registered horizon, counted in primitive steps


def test_model_and_env_must_match() -> None:
    model = bnpo.OptionModel(bnpo.OptionModelConfig(obs_dim=14, n_actions=5, n_options=2))
    with pytest.raises(UserError, match="n_actions=5 but the environment has 2 actions"):
        OptionsWrapper(gym.make("bnpo/Line-v0"), model)
    with pytest.raises(UserError, match="expects obs_dim=14 but the environment's encoded observation has 3"):
        OptionsWrapper(gym.make("bnpo/Room-v0", n_rooms=4), model)
    with pytest.raises(UserError, match="--option-steps must be >= 1"):
        OptionsWrapper(gym.make("bnpo/Landmarks-v0"), model, option_steps=0)


def test_landmarks_goal_task() -> None:
    env = gym.make("bnpo/LandmarksGoal-v0")
    assert env.observation_space == gym.make("bnpo/Landmarks-v0").observation_space
    obs, info = env.reset(seed=1)
    goal = env.unwrapped.landmarks[2]
    assert tuple(obs) != goal and not info["is_success"]
    total, steps, terminated = 0.0, 0, False
    while not terminated:  # walk x first, then y, to the goal
        x, y = (int(v) for v in obs)
        action = (0 if goal[0] > x else 1) if x != goal[0] else (2 if goal[1] > y else 3)
        obs, reward, terminated, truncated, info = env.step(action)
        total, steps = total + reward, steps + 1
    assert tuple(obs) == goal and total == 1.0 and info["is_success"] and steps <= 12
