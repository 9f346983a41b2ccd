"""Room(V), the paper's toy environment (reference §2.1), as a gymnasium ``Env``.

V + 1 vertical corridors ("rooms") 5 cells high. The agent starts at the bottom of room 0 and climbs one cell per
step; at the top of room 0 the action a teleports it to the bottom of room a (a = 0 keeps it there). Observation
(y, room, hint) as float32 numbers, as in the public code: the hint is the goal room in the first state only and -1
("no hint") afterwards, so the goal must be carried by an option. Reward 1 per step spent in the goal room. Goals are
drawn uniformly from 1..V. The registered horizon is 5 steps (the public code's 6 states, the last one dropped), so
every recorded step is in room 0 and the fifth action is the teleport.

The raw numeric encoding matters: with one-hot features the same training recipe recovered only 5 of 6 rooms on
3 of 3 seeds in our runs, while the raw (y, room, hint) features reproduce the reference figures.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from bnpo.envs.expert import EpsilonExpert

HEIGHT = 5


class RoomEnv(gym.Env):
    """Room(V) with the goal shown only in the first state.

    Args:
        n_rooms: V, the number of goal rooms (the vocabulary size).

    ``reset(options={"goal": g})`` fixes the goal; ``info["goal"]`` (1..V) and ``info["option"]`` (goal - 1, the
    ground-truth option) are given at every step.
    """

    metadata = {"render_modes": []}

    def __init__(self, n_rooms: int = 6) -> None:
        if n_rooms < 1:
            raise ValueError(f"n_rooms must be >= 1, got {n_rooms}")
        self.n_rooms = n_rooms
        self.observation_space = spaces.Box(
            low=np.array([0, 0, -1], dtype=np.float32),
            high=np.array([HEIGHT - 1, n_rooms, n_rooms], dtype=np.float32),
            dtype=np.float32,
        )
        self.action_space = spaces.Discrete(n_rooms + 1)
        self._y = 0
        self._room = 0
        self._goal = 1
        self._first = True

    def _obs(self) -> np.ndarray:
        hint = self._goal if self._first else -1
        return np.array([self._y, self._room, hint], dtype=np.float32)

    def _info(self) -> dict[str, Any]:
        return {"goal": self._goal, "option": self._goal - 1}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        goal = (options or {}).get("goal")
        if goal is None:
            goal = int(self.np_random.integers(1, self.n_rooms + 1))
        elif not 1 <= int(goal) <= self.n_rooms:
            raise ValueError(f"options['goal'] must be in 1..{self.n_rooms}, got {goal}")
        self._goal, self._y, self._room, self._first = int(goal), 0, 0, True
        return self._obs(), self._info()

    def step(self, action):
        action = int(action)
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in 0..{self.n_rooms}, got {action}")
        self._first = False
        if self._room == 0 and self._y == HEIGHT - 1 and action != 0:
            self._room, self._y = action, 0
        else:
            self._y = min(self._y + 1, HEIGHT - 1)
        reward = 1.0 if self._room == self._goal else 0.0
        return self._obs(), reward, False, False, self._info()


class RoomExpert(EpsilonExpert):
    """The scripted expert: emits the goal room at every step (uniform random action with probability ``epsilon``).

    Call as ``expert(observation, info) -> action``; reads ``info["goal"]``.
    """

    def __init__(self, n_rooms: int, *, epsilon: float = 0.0, seed: int = 0) -> None:
        super().__init__(n_rooms + 1, epsilon=epsilon, seed=seed)
        self.n_rooms = n_rooms

    def act(self, observation: np.ndarray, info: dict[str, Any]) -> int:
        return int(info["goal"])


def room_score_state() -> np.ndarray:
    """The observation (4, 0, no hint) at the top of room 0, where the Room score is measured."""
    return np.array([HEIGHT - 1, 0, -1], dtype=np.float32)
