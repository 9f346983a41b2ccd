"""MiniGrid/BabyAI levels (the ``minigrid`` package, ``bnpo[minigrid]``) with the scripted BabyAI bot as the expert.

``BabyAIExpertEnv`` wraps a BabyAI level: its observation is the agent's 7x7x3 egocentric view flattened (object,
colour and state codes as numbers, 147 values) followed by the one-hot direction (4), 151 float32 values; the
mission text is dropped, so the goal is hidden from the model as in Room. A ``minigrid.utils.baby_ai_bot.BabyAIBot``
plans alongside: after every reset and step (told which action was really taken, so noisy experts are replanned
for) it puts its suggested action in ``info["expert_action"]`` and the subgoal on top of its stack, the ground-truth
option, in ``info["option"]`` (an index into ``SUBGOALS``: the subgoal's type, and for "go next to" the kind of
target). Registered as ``bnpo/BabyAI-<Level>-v0`` for ``LEVELS``; ``bnpo.make_expert`` returns the policy that follows
``info["expert_action"]`` (with epsilon noise).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from bnpo.envs.expert import EpsilonExpert

LEVELS = ("GoToObj", "GoToLocal", "UnlockLocal", "UnlockLocalDist", "PickupLoc")
SUBGOALS = (
    "GoNextTo:key",
    "GoNextTo:door",
    "GoNextTo:ball",
    "GoNextTo:box",
    "GoNextTo:position",
    "Pickup",
    "Open",
    "Drop",
    "Close",
    "Explore",
    "other",
)


def subgoal_label(subgoal: Any) -> int:
    """Index in ``SUBGOALS`` of a BabyAI bot subgoal: its type, and for "go next to" the kind of object it heads
    for (an object description, an object, or a position holding an object; exploratory moves are "Explore")."""
    name = type(subgoal).__name__.removesuffix("Subgoal")
    if name != "GoNextTo":
        return SUBGOALS.index(name if name in SUBGOALS else "other")
    if getattr(subgoal, "reason", None) == "Explore":
        return SUBGOALS.index("Explore")
    datum = getattr(subgoal, "datum", None)
    kind = getattr(datum, "type", None)  # ObjDesc and WorldObj both carry the object type
    if kind is None and datum is not None:
        try:
            x, y = (int(v) for v in datum)
            obj = subgoal.bot.mission.unwrapped.grid.get(x, y)
            kind = getattr(obj, "type", None)
        except (TypeError, ValueError, AttributeError):
            kind = None
    label = f"GoNextTo:{kind}"
    return SUBGOALS.index(label if label in SUBGOALS else "GoNextTo:position")


class BabyAIExpertEnv(gym.Wrapper):
    """A BabyAI level with flat observations and the bot's plan in ``info`` (see the module docstring).

    Args:
        level: a BabyAI env id, e.g. ``BabyAI-UnlockLocal-v0``.
        expert: run the bot alongside (``info["expert_action"]``, ``info["option"]``); False skips its planning at
            every step, for downstream RL where no expert is needed (about 10x faster steps).
        **kwargs: passed to ``gym.make``.
    """

    def __init__(self, level: str, *, expert: bool = True, **kwargs: Any) -> None:
        import minigrid  # noqa: F401  (registers the BabyAI levels)

        super().__init__(gym.make(level, **kwargs))
        view = self.env.observation_space["image"]
        self.view_size = int(np.prod(view.shape))
        high = np.concatenate([view.high.reshape(-1).astype(np.float32), np.ones(4, np.float32)])
        self.observation_space = spaces.Box(0.0, high, dtype=np.float32)
        self.expert = expert
        self.bot = None

    def _flat(self, obs: dict[str, Any]) -> np.ndarray:
        direction = np.zeros(4, np.float32)
        direction[int(obs["direction"])] = 1.0
        return np.concatenate([obs["image"].reshape(-1).astype(np.float32), direction])

    def _plan(self, info: dict[str, Any], action_taken: int | None) -> dict[str, Any]:
        from minigrid.utils.baby_ai_bot import BabyAIBot

        if self.bot is None:
            self.bot = BabyAIBot(self.env)
        suggested = self.bot.replan(action_taken)
        top = self.bot.stack[-1] if self.bot.stack else None
        return {
            **info,
            "expert_action": int(suggested),
            "option": subgoal_label(top) if top is not None else SUBGOALS.index("other"),
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.bot = None
        return self._flat(obs), self._plan(info, None) if self.expert else info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(int(action))
        if self.expert and not (terminated or truncated):
            info = self._plan(info, int(action))
        return self._flat(obs), float(reward), terminated, truncated, info


class BabyAIBotExpert(EpsilonExpert):
    """``policy(obs, info)``: the bot's suggested action, or a uniform random one with probability ``epsilon``."""

    def act(self, observation: np.ndarray, info: dict[str, Any]) -> int:
        return int(info["expert_action"])


def make_level(level: str, **kwargs: Any) -> BabyAIExpertEnv:
    """Entry point of ``bnpo/BabyAI-<level>-v0``."""
    return BabyAIExpertEnv(f"BabyAI-{level}-v0", **kwargs)


__all__ = ["LEVELS", "SUBGOALS", "BabyAIBotExpert", "BabyAIExpertEnv", "make_level", "subgoal_label"]
