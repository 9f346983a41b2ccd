"""Learned options as temporally extended actions: a ``gymnasium.Wrapper`` with ``Discrete(n + K)`` actions.

Action ``a < n`` is the environment's primitive action ``a`` (one step). Action ``n + k`` runs option ``k`` of a
fitted :class:`~bnpo.model.OptionModel`: at every step it takes π_k's greedy action (argmax), then, at the new
state s', stops when β_k(s') fires (``beta_threshold``: β_k(s') > threshold; ``None``: a Bernoulli(β_k(s')) draw from
the wrapper's generator), when it has run ``option_steps`` primitive steps (the public Atari code's cap, 15), or when
the episode ends (terminated or truncated). The wrapper's reward is the discounted inner return
Σ_{i<n} γ^i r_i; ``info["steps_count"]`` is the number n of primitive steps taken (1 for a primitive action), the
quantity an SMDP learner discounts by (γ^n, see :mod:`bnpo.rl`). The ``info`` of the last primitive step is returned,
with ``steps_count``, ``option`` (k, or -1 for a primitive action) and ``option_rewards`` (the undiscounted inner
rewards) added.

Observations reach the model encoded as at fit time: :func:`bnpo.data.collect` flattens them with
``gymnasium.spaces.flatten`` (one-hot for Discrete/MultiDiscrete, raw numbers for Box), so the wrapper does the same
with the wrapped env's observation space, unless an ``encode`` callable is given. The wrapper's own observations are
the env's raw observations, unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from bnpo.model import OptionModel
from sixlab_shared import UserError

logger = logging.getLogger(__name__)

DEFAULT_OPTION_STEPS = 15


def flatten_encoder(space: gym.Space) -> Callable[[Any], np.ndarray]:
    """The fit-time observation encoding of :func:`bnpo.data.collect`: ``gymnasium.spaces.flatten`` as float32."""
    return lambda observation: gym.spaces.flatten(space, observation).astype(np.float32)


def check_compatible(env: gym.Env, model: OptionModel, encode: Callable[[Any], np.ndarray] | None = None) -> None:
    """Raise a one-line :class:`UserError` when ``model`` cannot act in ``env``.

    The env must have a Discrete action space with ``model.config.n_actions`` actions (discrete-action models only),
    and its encoded observation must have ``model.config.obs_dim`` entries.
    """
    if model.config.continuous:
        raise UserError("the options model has continuous actions; the options wrapper needs a discrete-action model")
    space = env.action_space
    if not isinstance(space, gym.spaces.Discrete):
        raise UserError(f"the environment's action space must be Discrete for options, got {space}")
    if int(space.n) != model.config.n_actions:
        raise UserError(
            f"the options model has n_actions={model.config.n_actions} but the environment has "
            f"{int(space.n)} actions ({space}); fit the model on data from this environment"
        )
    encode = encode or flatten_encoder(env.observation_space)
    try:
        dim = int(np.asarray(encode(env.observation_space.sample())).size)
    except (TypeError, ValueError) as err:
        raise UserError(f"cannot encode the environment's observations ({err})") from err
    if dim != model.config.obs_dim:
        raise UserError(
            f"the options model expects obs_dim={model.config.obs_dim} but the environment's encoded observation "
            f"has {dim} entries ({env.observation_space}); fit the model on data from this environment"
        )


class OptionsWrapper(gym.Wrapper):
    """Primitive actions plus the K options of a fitted model (see the module docstring).

    Args:
        env: a gymnasium env with a Discrete action space (its ``start`` is respected).
        model: a fitted discrete-action :class:`OptionModel` whose ``obs_dim``/``n_actions`` match the env.
        option_steps: cap on the primitive steps of one option call (>= 1).
        gamma: discount of the inner return, in [0, 1].
        beta_threshold: an option stops at s' when β_k(s') > this (in [0, 1)); ``None`` samples Bernoulli(β_k(s')).
        encode: observation -> (obs_dim,) float array; default: ``gymnasium.spaces.flatten`` (as at fit time).

    Raises:
        UserError: the model does not fit the env, or an argument is out of range.

    Example:
        >>> import gymnasium as gym, bnpo
        >>> env = gym.make("bnpo/Line-v0")
        >>> model = bnpo.OptionModel(bnpo.OptionModelConfig(obs_dim=10, n_actions=2, n_options=2))
        >>> wrapped = OptionsWrapper(env, model, option_steps=5)
        >>> wrapped.action_space
        Discrete(4)
        >>> obs, info = wrapped.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = wrapped.step(2)  # option 0
        >>> 1 <= info["steps_count"] <= 5
        True
    """

    def __init__(
        self,
        env: gym.Env,
        model: OptionModel,
        *,
        option_steps: int = DEFAULT_OPTION_STEPS,
        gamma: float = 0.99,
        beta_threshold: float | None = 0.5,
        encode: Callable[[Any], np.ndarray] | None = None,
    ) -> None:
        super().__init__(env)
        if option_steps < 1:
            raise UserError(f"--option-steps must be >= 1, got {option_steps}")
        if not 0.0 <= gamma <= 1.0:
            raise UserError(f"gamma must be in [0, 1], got {gamma}")
        if beta_threshold is not None and not 0.0 <= beta_threshold < 1.0:
            raise UserError(f"beta_threshold must be in [0, 1) or None, got {beta_threshold}")
        check_compatible(env, model, encode)
        self.model = model.eval()
        self.encode = encode or flatten_encoder(env.observation_space)
        self.n_primitive = int(env.action_space.n)
        self.start = int(env.action_space.start)
        self.n_options = model.n_options
        self.option_steps = option_steps
        self.gamma = gamma
        self.beta_threshold = beta_threshold
        self.action_space = gym.spaces.Discrete(self.n_primitive + self.n_options)
        self._obs: Any = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs = obs
        return obs, info

    def _encoded(self, observation: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(self.encode(observation), dtype=np.float32))

    def option_action(self, observation: Any, option: int) -> int:
        """The env action (``start`` added) that option ``option`` takes greedily at ``observation``."""
        return int(self.model.act(self._encoded(observation), option, greedy=True)) + self.start

    def option_stops(self, observation: Any, option: int) -> bool:
        """Whether option ``option`` terminates at ``observation`` (threshold or Bernoulli on β)."""
        beta = float(self.model.terminates(self._encoded(observation), option))
        if self.beta_threshold is None:
            return bool(self.np_random.random() < beta)
        return beta > self.beta_threshold

    def step(self, action):
        action = int(action)
        if not 0 <= action < self.action_space.n:
            raise ValueError(f"action must be in 0..{self.action_space.n - 1}, got {action}")
        if self._obs is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if action < self.n_primitive:
            obs, reward, terminated, truncated, info = self.env.step(action + self.start)
            self._obs = obs
            info = {**info, "steps_count": 1, "option": -1, "option_rewards": [float(reward)]}
            return obs, float(reward), terminated, truncated, info
        option = action - self.n_primitive
        obs, total, discount, rewards = self._obs, 0.0, 1.0, []
        terminated = truncated = False
        info: dict[str, Any] = {}
        while True:
            obs, reward, terminated, truncated, info = self.env.step(self.option_action(obs, option))
            rewards.append(float(reward))
            total += discount * float(reward)
            discount *= self.gamma
            if terminated or truncated or len(rewards) >= self.option_steps or self.option_stops(obs, option):
                break
        self._obs = obs
        info = {**info, "steps_count": len(rewards), "option": option, "option_rewards": rewards}
        return obs, total, terminated, truncated, info


__all__ = ["DEFAULT_OPTION_STEPS", "OptionsWrapper", "check_compatible", "flatten_encoder"]
