"""Landmarks: a 7x7 grid with four hidden landmark cells (reference §4, K_true = 4).

The environment holds a hidden target landmark; when the agent steps onto it, reward 1 and a new target is drawn
uniformly among all the landmarks. The observation is the agent's (x, y) only. ``info["option"]`` is the target's
index (the ground-truth option); ``info["target"]`` its cell. Ground truth: option = landmark, and option k
terminates exactly at landmark k. Actions: 0 +x, 1 -x, 2 +y, 3 -y, 4 stay.

Two choices make the ground truth recoverable by the paper's model, each measured (``tests/test_bnpo_landmarks.py``
and the package README):

* Layout. The landmarks (1, 2), (4, 1), (5, 4) and (2, 5) share no row and no column, so the expert's x-first walk
  from one landmark to another never crosses a third. On four corners ((1, 1), (5, 1), (1, 5), (5, 5)) walks cross
  other landmarks (from (1, 5) to (5, 1) the walk passes (5, 5)), "target (5, 5), then (5, 1)" gives the same
  actions as "target (5, 1)", and even the true option model decodes only 0.920 of the steps correctly (0.979 on
  this layout, 1000 episodes).
* Memoryless targets. The next target is drawn from all the landmarks, the one the agent stands on included (the
  expert then stays one step, action 4), exactly as the paper's model draws every new option from one
  state-independent eta. An expert that never repeats the landmark it stands on (``memoryless=False``: four actions,
  targets among the other landmarks) has a memory the model cannot express; maximum likelihood then prefers options
  that mix landmarks by where the agent came from (measured: such fits reach a higher likelihood than the
  true options).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from bnpo.envs.expert import EpsilonExpert

SIZE = 7
LANDMARKS = ((1, 2), (4, 1), (5, 4), (2, 5))  # no shared row or column (see the module docstring)
CORNER_LANDMARKS = ((1, 1), (5, 1), (1, 5), (5, 5))
MOVES = ((1, 0), (-1, 0), (0, 1), (0, -1))  # action 0: +x, 1: -x, 2: +y, 3: -y


class LandmarksEnv(gym.Env):
    """Grid world with hidden landmark targets.

    Args:
        size: grid side (7).
        landmarks: landmark cells (x, y); four by default.
        memoryless: draw each new target from all the landmarks (five actions, 4 = stay); False draws it among the
            other landmarks and has four actions.
    """

    metadata = {"render_modes": []}

    def __init__(
        self, size: int = SIZE, landmarks: tuple[tuple[int, int], ...] = LANDMARKS, memoryless: bool = True
    ) -> None:
        landmarks = tuple(tuple(int(c) for c in cell) for cell in landmarks)
        if len(landmarks) < 2 or len(set(landmarks)) != len(landmarks):
            raise ValueError(f"landmarks must hold >= 2 distinct cells, got {landmarks}")
        if any(not (0 <= c < size) for cell in landmarks for c in cell):
            raise ValueError(f"landmarks must lie inside the {size}x{size} grid, got {landmarks}")
        self.size = size
        self.landmarks = landmarks
        self.observation_space = spaces.MultiDiscrete([size, size])
        self.memoryless = memoryless
        self.action_space = spaces.Discrete(5 if memoryless else 4)
        self._pos = (0, 0)
        self._target = 0

    def _obs(self) -> np.ndarray:
        return np.array(self._pos, dtype=np.int64)

    def _info(self) -> dict[str, Any]:
        return {"option": self._target, "target": self.landmarks[self._target]}

    def _draw_target(self, exclude: int | None) -> int:
        choices = [k for k in range(len(self.landmarks)) if self.memoryless or k != exclude]
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
            raise ValueError(f"action must be in 0..{self.action_space.n - 1}, got {action}")
        dx, dy = MOVES[action] if action < 4 else (0, 0)
        self._pos = (min(max(self._pos[0] + dx, 0), self.size - 1), min(max(self._pos[1] + dy, 0), self.size - 1))
        reward = 0.0
        if self._pos == self.landmarks[self._target]:
            reward = 1.0
            self._target = self._draw_target(self._target)
        return self._obs(), reward, False, False, self._info()


class LandmarksExpert(EpsilonExpert):
    """Scripted expert: walks to ``info["target"]``, x first then y, and stays (action 4) when it stands on it; a
    uniform random action (among ``n_actions``) with prob. ``epsilon``."""

    def __init__(self, *, epsilon: float = 0.05, seed: int = 0, n_actions: int = 4) -> None:
        super().__init__(n_actions, epsilon=epsilon, seed=seed)

    def act(self, observation: np.ndarray, info: dict[str, Any]) -> int:
        x, y = int(observation[0]), int(observation[1])
        tx, ty = info["target"]
        if (x, y) == (tx, ty):
            return 4
        if x != tx:
            return 0 if tx > x else 1
        return 2 if ty > y else 3


class LandmarksGoalEnv(LandmarksEnv):
    """The downstream task on the Landmarks grid (reference §4 "Downstream"): reach one hidden goal landmark.

    Same grid, landmarks, observation (x, y) and actions as :class:`LandmarksEnv` (so options fitted on Landmarks
    data apply), but the reward is sparse: 1 on stepping onto landmark ``goal`` (``reset(options={"goal": g})``
    overrides it for one episode), which ends the episode (``terminated``, ``info["is_success"] = True``); 0
    otherwise. The start cell is uniform over the cells other than the goal. The registered horizon is 20 steps.
    """

    def __init__(
        self,
        size: int = SIZE,
        landmarks: tuple[tuple[int, int], ...] = LANDMARKS,
        memoryless: bool = True,
        goal: int = 2,
    ) -> None:
        super().__init__(size=size, landmarks=landmarks, memoryless=memoryless)
        if not 0 <= goal < len(self.landmarks):
            raise ValueError(f"goal must index a landmark (0..{len(self.landmarks) - 1}), got {goal}")
        self.goal = goal
        self._goal = goal

    def _info(self) -> dict[str, Any]:
        return {"is_success": self._pos == self.landmarks[self._goal]}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        gym.Env.reset(self, seed=seed)
        self._goal = int((options or {}).get("goal", self.goal))
        cells = [(x, y) for x in range(self.size) for y in range(self.size) if (x, y) != self.landmarks[self._goal]]
        self._pos = cells[int(self.np_random.integers(0, len(cells)))]
        return self._obs(), self._info()

    def step(self, action):
        action = int(action)
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in 0..{self.action_space.n - 1}, got {action}")
        dx, dy = MOVES[action] if action < 4 else (0, 0)
        self._pos = (min(max(self._pos[0] + dx, 0), self.size - 1), min(max(self._pos[1] + dy, 0), self.size - 1))
        reached = self._pos == self.landmarks[self._goal]
        return self._obs(), float(reached), reached, False, self._info()
