"""Taxi with the destination hidden after the first step, on gymnasium's own ``Taxi-v4`` dynamics (issue 16).

The taxi, the walls, the four stands R, G, Y, B, the rewards (-1 per step, +20 for a correct drop-off, -10 for an
illegal pick-up or drop-off) and the episode end at the drop-off are gymnasium's ``TaxiEnv`` (not re-implemented:
its transition table drives every step). Only the observation changes: (taxi row, taxi column, passenger location
(0-3 a stand, 4 in the taxi), destination), where the destination is shown in the first observation only and reads
4 ("hidden") afterwards, as Room's goal (reference §4: "Taxi-v3 with the target hidden"). After the pick-up the
destination must be carried by an option.

Ground truth (``info["option"]``): the stand the expert is heading for, i.e. the passenger's stand until the
pick-up (that step included), then the destination until the drop-off: four options "drive to stand k, then pick up
or drop off", K_true = 4. ``info["target"]`` is that stand's index too. ``info["is_success"]`` is True on the step
that delivers the passenger (Taxi's only termination), so downstream learning curves count deliveries, not
positive returns.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.toy_text.taxi import TaxiEnv

from bnpo.envs.expert import EpsilonExpert

HIDDEN = 4
PICKUP, DROPOFF = 4, 5


class TaxiHiddenEnv(gym.Env):
    """gymnasium's Taxi with the destination in the first observation only (see the module docstring)."""

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.taxi = TaxiEnv()
        self.observation_space = spaces.MultiDiscrete([5, 5, 5, 5])
        self.action_space = spaces.Discrete(6)
        self._state = 0
        self._first = True

    def _obs(self) -> np.ndarray:
        row, col, passenger, destination = self.taxi.decode(self._state)
        return np.array([row, col, passenger, destination if self._first else HIDDEN], dtype=np.int64)

    def _info(self, delivered: bool = False) -> dict[str, Any]:
        _, _, passenger, destination = self.taxi.decode(self._state)
        target = passenger if passenger < 4 else destination
        return {"option": int(target), "target": int(target), "destination": int(destination), "is_success": delivered}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        state, _ = self.taxi.reset(seed=int(self.np_random.integers(0, 2**31 - 1)))
        self._state, self._first = int(state), True
        return self._obs(), self._info()

    def step(self, action):
        action = int(action)
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in 0..5, got {action}")
        state, reward, terminated, truncated, _ = self.taxi.step(action)
        self._state, self._first = int(state), False
        return self._obs(), float(reward), bool(terminated), bool(truncated), self._info(bool(terminated))

    def state_of(self, observation: np.ndarray, destination: int) -> int:
        """The Taxi state index of an observation, given the (hidden) destination."""
        row, col, passenger, _ = (int(v) for v in observation)
        return int(self.taxi.encode(row, col, passenger, destination))


def shortest_first_move(taxi: TaxiEnv, state: int, target: tuple[int, int]) -> int:
    """First move (0 south, 1 north, 2 east, 3 west) of a shortest path, through Taxi's walls, from ``state``'s cell
    to ``target``; BFS over Taxi's own transition table (ties: the lowest action)."""
    start = tuple(taxi.decode(state))[:2]
    if start == target:
        raise ValueError("already at the target")
    queue = deque([(state, None)])
    seen = {start}
    while queue:
        current, first = queue.popleft()
        for move in range(4):
            nxt = taxi.P[current][move][0][1]
            cell = tuple(taxi.decode(nxt))[:2]
            if cell in seen:
                continue
            step = move if first is None else first
            if cell == target:
                return step
            seen.add(cell)
            queue.append((nxt, step))
    raise ValueError(f"no path to {target}")


class TaxiExpert(EpsilonExpert):
    """Drives a shortest path to the passenger, picks up, drives to the destination (known from ``info``, i.e. from
    the first observation), drops off; a uniform random action with probability ``epsilon``."""

    def __init__(self, env: TaxiHiddenEnv, *, epsilon: float = 0.0, seed: int = 0) -> None:
        super().__init__(6, epsilon=epsilon, seed=seed)
        self.env = env

    def act(self, observation: np.ndarray, info: dict[str, Any]) -> int:
        taxi = self.env.taxi
        state = self.env.state_of(observation, info["destination"])
        row, col, passenger, destination = taxi.decode(state)
        target = taxi.locs[passenger if passenger < 4 else destination]
        if (row, col) == tuple(target):
            return PICKUP if passenger < 4 else DROPOFF
        return shortest_first_move(taxi, state, tuple(target))
