"""gymnasium environments of bnpo, registered under the ``bnpo/`` namespace, and their scripted experts.

========================  ======================================  ==========
id                        environment                             horizon
========================  ======================================  ==========
``bnpo/Room-v0``          Room(V), ``n_rooms=6`` by default       5 steps
``bnpo/Line-v0``          Line, positions 0..9, K_true = 2        20 steps
``bnpo/Landmarks-v0``     7x7 grid, 4 hidden landmarks            30 steps
``bnpo/LandmarksGoal-v0`` downstream: reach hidden landmark 2     20 steps
``bnpo/TaxiHidden-v0``    gymnasium Taxi, destination hidden      200 steps
                          after the first step (K_true = 4)
========================  ======================================  ==========

``bnpo/BabyAI-<Level>-v0`` for the levels in ``bnpo.envs.babyai.LEVELS`` (``GoToObj``, ``GoToLocal``,
``UnlockLocal``, ``UnlockLocalDist`` (UnlockLocal with distractor objects), ``PickupLoc``; needs
``bnpo[minigrid]``): the BabyAI level with flat observations, the mission hidden, and the BabyAI bot as the expert
(its subgoal stack labels the options).

``make_expert(env, seed=...)`` returns the scripted expert of a bnpo environment as a ``policy(obs, info)`` callable.
"""

from __future__ import annotations

import gymnasium as gym

from bnpo.envs.babyai import LEVELS, BabyAIBotExpert, BabyAIExpertEnv
from bnpo.envs.landmarks import LandmarksEnv, LandmarksExpert, LandmarksGoalEnv
from bnpo.envs.line import LineEnv, LineExpert
from bnpo.envs.room import RoomEnv, RoomExpert
from bnpo.envs.taxi import TaxiExpert, TaxiHiddenEnv

ENV_IDS = {
    "bnpo/Room-v0": ("bnpo.envs.room:RoomEnv", 5),
    "bnpo/Line-v0": ("bnpo.envs.line:LineEnv", 20),
    "bnpo/Landmarks-v0": ("bnpo.envs.landmarks:LandmarksEnv", 30),
    "bnpo/TaxiHidden-v0": ("bnpo.envs.taxi:TaxiHiddenEnv", 200),
}
BABYAI_ENV_IDS = {f"bnpo/BabyAI-{level}-v0": level for level in LEVELS}
DOWNSTREAM_ENV_IDS = {
    "bnpo/LandmarksGoal-v0": ("bnpo.envs.landmarks:LandmarksGoalEnv", 20),
}


def register_envs() -> None:
    """Register the bnpo environments with gymnasium (idempotent; done on ``import bnpo``)."""
    for env_id, (entry_point, horizon) in {**ENV_IDS, **DOWNSTREAM_ENV_IDS}.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=horizon)
    for env_id, level in BABYAI_ENV_IDS.items():  # minigrid is imported only when one is made
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="bnpo.envs.babyai:make_level", kwargs={"level": level})


def make_expert(env: gym.Env, *, epsilon: float | None = None, seed: int = 0):
    """The scripted expert of a bnpo environment (``policy(obs, info) -> action``).

    Args:
        env: a bnpo environment, wrapped or not.
        epsilon: probability of a uniform random action (defaults: Room 0, Line 0, Landmarks 0.05).
        seed: the expert's own randomness.

    Raises:
        ValueError: ``env`` is not a bnpo environment.
    """
    base = env.unwrapped
    if isinstance(base, RoomEnv):
        return RoomExpert(base.n_rooms, epsilon=epsilon or 0.0, seed=seed)
    if isinstance(base, LineEnv):
        return LineExpert(epsilon=epsilon or 0.0, seed=seed)
    if isinstance(base, LandmarksGoalEnv):
        raise ValueError("LandmarksGoal is a downstream task with no scripted expert; collect data on Landmarks")
    if isinstance(base, LandmarksEnv):
        return LandmarksExpert(
            epsilon=0.05 if epsilon is None else epsilon, seed=seed, n_actions=int(base.action_space.n)
        )
    layer = env
    while isinstance(layer, gym.Wrapper):  # the BabyAI wrapper sits inside gym.make's own wrappers
        if isinstance(layer, BabyAIExpertEnv):
            return BabyAIBotExpert(int(layer.action_space.n), epsilon=epsilon or 0.0, seed=seed)
        layer = layer.env
    if isinstance(base, TaxiHiddenEnv):
        return TaxiExpert(base, epsilon=epsilon or 0.0, seed=seed)
    raise ValueError(f"no scripted expert for {type(base).__name__}; pass your own policy(obs, info) callable")


__all__ = [
    "BABYAI_ENV_IDS",
    "BabyAIBotExpert",
    "BabyAIExpertEnv",
    "DOWNSTREAM_ENV_IDS",
    "ENV_IDS",
    "LandmarksEnv",
    "LandmarksExpert",
    "LandmarksGoalEnv",
    "LineEnv",
    "LineExpert",
    "RoomEnv",
    "RoomExpert",
    "TaxiExpert",
    "TaxiHiddenEnv",
    "make_expert",
    "register_envs",
]
