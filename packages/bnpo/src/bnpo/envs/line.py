"""Line: positions 0..9, two hidden skills "go right until 9" and "go left until 0" (reference §4, K_true = 2).

The observation is the position only; the direction is hidden. Reaching an end flips the direction, so the true
option switches at the ends. ``info["option"]`` is the direction (0 = left, 1 = right).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium import spaces

from bnpo.envs.expert import EpsilonExpert


class LineEnv(gym.Env):
    """A 1-D line world with a hidden direction that flips at the ends.

    Args:
        length: number of positions (10).
    """

    metadata = {"render_modes": []}

    def __init__(self, length: int = 10) -> None:
        if length < 2:
            raise ValueError(f"length must be >= 2, got {length}")
        self.length = length
        self.observation_space = spaces.Discrete(length)
        self.action_space = spaces.Discrete(2)
        self._pos = 0
        self._direction = 1

    def _info(self) -> dict[str, Any]:
        return {"direction": self._direction, "option": self._direction}

    def _flip_at_ends(self) -> None:
        if self._pos == self.length - 1:
            self._direction = 0
        elif self._pos == 0:
            self._direction = 1

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._pos = int(self.np_random.integers(0, self.length))
        self._direction = int(self.np_random.integers(0, 2))
        self._flip_at_ends()
        return self._pos, self._info()

    def step(self, action):
        action = int(action)
        if not self.action_space.contains(action):
            raise ValueError(f"action must be 0 (left) or 1 (right), got {action}")
        self._pos = min(max(self._pos + (1 if action == 1 else -1), 0), self.length - 1)
        self._flip_at_ends()
        return self._pos, 0.0, False, False, self._info()


class LineExpert(EpsilonExpert):
    """Scripted expert: moves in the hidden direction (``info["direction"]``), random with probability ``epsilon``."""

    def __init__(self, *, epsilon: float = 0.0, seed: int = 0) -> None:
        super().__init__(2, epsilon=epsilon, seed=seed)

    def act(self, observation: Any, info: dict[str, Any]) -> int:
        return int(info["direction"])
