"""Landmarks: a 7x7 grid with four hidden landmark cells (reference §4, K_true = 4).

The environment holds a hidden target landmark; when the agent steps onto it, reward 1 and a new target is drawn
uniformly among the other landmarks. The observation is the agent's (x, y) only. ``info["option"]`` is the target's
index (the ground-truth option); ``info["target"]`` its cell. Ground truth: option = landmark, and option k
terminates exactly at landmark k.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

SIZE = 7
LANDMARKS = ((1, 1), (5, 1), (1, 5), (5, 5))
MOVES = ((1, 0), (-1, 0), (0, 1), (0, -1))  # action 0: +x, 1: -x, 2: +y, 3: -y


class LandmarksEnv(gym.Env):
    """Grid world with hidden landmark targets.

    Args:
        size: grid side (7).
        landmarks: landmark cells (x, y); four by default.
    """

    metadata = {"render_modes": []}

    def __init__(self, size: int = SIZE, landmarks: tuple[tuple[int, int], ...] = LANDMARKS) -> None:
        landmarks = tuple(tuple(int(c) for c in cell) for cell in landmarks)
        if len(landmarks) < 2 or len(set(landmarks)) != len(landmarks):
            raise ValueError(f"landmarks must hold >= 2 distinct cells, got {landmarks}")
        if any(not (0 <= c < size) for cell in landmarks for c in cell):
            raise ValueError(f"landmarks must lie inside the {size}x{size} grid, got {landmarks}")
        self.size = size
        self.landmarks = landmarks
        self.observation_space = spaces.MultiDiscrete([size, size])
        self.action_space = spaces.Discrete(4)
        self._pos = (0, 0)
        self._target = 0

    def _obs(self) -> np.ndarray:
        return np.array(self._pos, dtype=np.int64)

    def _info(self) -> dict[str, Any]:
        return {"option": self._target, "target": self.landmarks[self._target]}

    def _draw_target(self, exclude: int | None) -> int:
        choices = [k for k in range(len(self.landmarks)) if k != exclude]
        return int(choices[int(self.np_random.integers(0, len(choices)))])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._pos = (int(self.np_random.integers(0, self.size)), int(self.np_random.integers(0, self.size)))
        here = self.landmarks.index(self._pos) if self._pos in self.landmarks else None
        self._target = self._draw_target(here)
        return self._obs(), self._info()

    def step(self, action):
        action = int(action)
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in 0..3, got {action}")
        dx, dy = MOVES[action]
        self._pos = (min(max(self._pos[0] + dx, 0), self.size - 1), min(max(self._pos[1] + dy, 0), self.size - 1))
        reward = 0.0
        if self._pos == self.landmarks[self._target]:
            reward = 1.0
            self._target = self._draw_target(self._target)
        return self._obs(), reward, False, False, self._info()


class LandmarksExpert:
    """Scripted expert: walks to ``info["target"]``, x first then y; a uniform random move with prob. ``epsilon``."""

    def __init__(self, *, epsilon: float = 0.05, seed: int = 0) -> None:
        self.epsilon = epsilon
        self.rng = np.random.default_rng(seed)

    def __call__(self, observation: np.ndarray, info: dict[str, Any]) -> int:
        if self.epsilon > 0 and self.rng.random() < self.epsilon:
            return int(self.rng.integers(0, 4))
        x, y = int(observation[0]), int(observation[1])
        tx, ty = info["target"]
        if x != tx:
            return 0 if tx > x else 1
        return 2 if ty > y else 3
