"""The part every scripted expert of bnpo shares: with probability ``epsilon`` a uniform random action, else its own."""

from __future__ import annotations

from typing import Any

import numpy as np


class EpsilonExpert:
    """Base of the scripted experts, called as ``expert(observation, info) -> action``.

    With probability ``epsilon`` the action is uniform over ``0..n_actions-1`` (from the expert's own generator,
    seeded by ``seed``); otherwise it is :meth:`act`. Subclasses implement :meth:`act`.
    """

    def __init__(self, n_actions: int, *, epsilon: float = 0.0, seed: int = 0) -> None:
        self.n_actions = n_actions
        self.epsilon = epsilon
        self.rng = np.random.default_rng(seed)

    def __call__(self, observation: Any, info: dict[str, Any]) -> int:
        if self.epsilon > 0 and self.rng.random() < self.epsilon:
            return int(self.rng.integers(0, self.n_actions))
        return int(self.act(observation, info))

    def act(self, observation: Any, info: dict[str, Any]) -> int:
        """The expert's own action (no randomness)."""
        raise NotImplementedError
