"""SMDP PPO on Stable-Baselines3 2.x: learning with options counts and discounts real environment steps.

An option call of n primitive steps (``info["steps_count"]``, set by :class:`bnpo.options.OptionsWrapper`) is one
decision whose reward is already the discounted inner return. :class:`SMDPRolloutBuffer` discounts by the real
duration (the SMDP GAE of the public code's forked buffer, reference §2.2):

    δ_t = r_t + γ^{n_t} V(s_{t+1}) (1 - done_t) - V(s_t),     A_t = δ_t + (γλ)^{n_t} (1 - done_t) A_{t+1}

and :class:`SMDPPPO` bootstraps a time-limit truncation with γ^n V(s_terminal) (SB3 uses γ). With every n_t = 1 both
are exactly SB3's PPO (tested). SMDPPPO also counts primitive environment steps and records every finished episode
(primitive steps so far, decisions so far, success, return), so learning curves are drawn against primitive steps.

Built on Stable-Baselines3 >= 2.3 (a dependency of bnpo).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from sixlab_shared import UserError

logger = logging.getLogger(__name__)


class SMDPRolloutBuffer(RolloutBuffer):
    """SB3's rollout buffer with one more column, the number of primitive steps n of each decision, and the SMDP
    GAE above (γ^n for the bootstrap, (γλ)^n for the trace)."""

    steps: np.ndarray

    def reset(self) -> None:
        """Empty the buffer; every decision lasts one step until :meth:`add` says otherwise."""
        super().reset()
        self.steps = np.ones((self.buffer_size, self.n_envs), dtype=np.float32)

    def add(self, *args: Any, steps: np.ndarray | None = None, **kwargs: Any) -> None:
        """SB3's ``add`` plus ``steps``: (n_envs,) primitive steps of each env's decision (default 1)."""
        if steps is not None:
            self.steps[self.pos] = np.asarray(steps, dtype=np.float32).reshape(self.n_envs)
        super().add(*args, **kwargs)

    def compute_returns_and_advantage(self, last_values: torch.Tensor, dones: np.ndarray) -> None:
        """SMDP GAE(λ) advantages and λ-returns (``returns = advantages + values``), in place.

        Args:
            last_values: (n_envs,) or (n_envs, 1) V of the observation after the last decision.
            dones: (n_envs,) whether the last decision ended its episode.
        """
        last_values = last_values.clone().cpu().numpy().flatten()
        last_gae_lam = np.zeros(self.n_envs, dtype=np.float32)
        for step in reversed(range(self.buffer_size)):
            if step == self.buffer_size - 1:
                next_non_terminal = 1.0 - dones.astype(np.float32)
                next_values = last_values
            else:
                next_non_terminal = 1.0 - self.episode_starts[step + 1]
                next_values = self.values[step + 1]
            n = self.steps[step]
            delta = self.rewards[step] + self.gamma**n * next_values * next_non_terminal - self.values[step]
            last_gae_lam = delta + (self.gamma * self.gae_lambda) ** n * next_non_terminal * last_gae_lam
            self.advantages[step] = last_gae_lam
        self.returns = self.advantages + self.values


@dataclass
class Episode:
    """One finished training episode."""

    primitive_steps: int
    """Primitive environment steps of all envs so far, this episode's included."""
    decisions: int
    """Decisions (agent actions, options counting one) of all envs so far."""
    length: int
    """Primitive steps of this episode."""
    ret: float
    """Undiscounted return (sum of every primitive reward)."""
    success: bool
    """``info["is_success"]`` at the episode's end if the env reports it, else ``ret > 0``."""


class SMDPPPO(PPO):
    """PPO whose rollouts discount by each decision's duration and count primitive steps.

    Takes PPO's arguments plus ``primitive_budget`` (stop collecting once this many primitive steps have been taken;
    None: no limit). ``rollout_buffer_class`` defaults to :class:`SMDPRolloutBuffer`. After ``learn``,
    ``episodes`` lists every finished episode (:class:`Episode`) and ``primitive_steps`` counts all steps.

    With ``verbose=0`` and no ``tensorboard_log`` (SB3's defaults) the model gets a logger with no outputs: SB3
    would otherwise make an empty folder ``<tempdir>/SB3-<date-time>`` on every ``learn`` call
    (``stable_baselines3.common.logger.configure`` creates its folder even when nothing is written to it).
    """

    def __init__(self, *args: Any, primitive_budget: int | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("rollout_buffer_class", SMDPRolloutBuffer)
        super().__init__(*args, **kwargs)
        if not self.verbose and self.tensorboard_log is None:
            self.set_logger(Logger(folder=None, output_formats=[]))
        self.primitive_budget = primitive_budget
        self.primitive_steps = 0
        self.episodes: list[Episode] = []
        self._episode_steps = np.zeros(self.n_envs, dtype=np.int64)
        self._episode_return = np.zeros(self.n_envs, dtype=np.float64)

    def _record(self, infos: list[dict[str, Any]], rewards: np.ndarray, dones: np.ndarray, steps: np.ndarray) -> None:
        for idx, info in enumerate(infos):
            self._episode_steps[idx] += int(steps[idx])
            inner = info.get("option_rewards")  # undiscounted inner rewards of an option call
            self._episode_return[idx] += float(sum(inner)) if inner is not None else float(rewards[idx])
            if dones[idx]:
                ret = float(self._episode_return[idx])
                success = bool(info["is_success"]) if "is_success" in info else ret > 0
                self.episodes.append(
                    Episode(self.primitive_steps, self.num_timesteps, int(self._episode_steps[idx]), ret, success)
                )
                self._episode_steps[idx] = 0
                self._episode_return[idx] = 0.0

    def collect_rollouts(self, env: VecEnv, callback, rollout_buffer: RolloutBuffer, n_rollout_steps: int) -> bool:
        """SB3's ``OnPolicyAlgorithm.collect_rollouts`` (discrete and Box actions, no gSDE) with the SMDP changes:
        each decision's ``steps_count`` goes to the buffer, truncations bootstrap with γ^n, and primitive steps and
        finished episodes are counted. Returns False when the callback or ``primitive_budget`` stops training."""
        assert self._last_obs is not None, "No previous observation was provided"
        if self.use_sde:
            raise UserError("SMDPPPO does not support gSDE (use_sde=True)")
        self.policy.set_training_mode(False)
        n_steps = 0
        rollout_buffer.reset()
        callback.on_rollout_start()
        new_obs, dones = self._last_obs, self._last_episode_starts
        while n_steps < n_rollout_steps:
            if self.primitive_budget is not None and self.primitive_steps >= self.primitive_budget:
                return False
            with torch.no_grad():
                actions, values, log_probs = self.policy(obs_as_tensor(self._last_obs, self.device))
            actions = actions.cpu().numpy()
            clipped = actions
            if isinstance(self.action_space, spaces.Box):
                clipped = np.clip(actions, self.action_space.low, self.action_space.high)
            new_obs, rewards, dones, infos = env.step(clipped)
            steps = np.array([int(info.get("steps_count", 1)) for info in infos], dtype=np.int64)
            self.num_timesteps += env.num_envs
            self.primitive_steps += int(steps.sum())
            self._record(infos, rewards, dones, steps)
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)
            for idx, done in enumerate(dones):
                if (
                    done
                    and infos[idx].get("terminal_observation") is not None
                    and infos[idx].get("TimeLimit.truncated", False)
                ):
                    terminal_obs = self.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                    with torch.no_grad():
                        terminal_value = self.policy.predict_values(terminal_obs)[0]
                    rewards[idx] += self.gamma ** steps[idx] * terminal_value  # SB3: gamma * V
            rollout_buffer.add(
                self._last_obs, actions, rewards, self._last_episode_starts, values, log_probs, steps=steps
            )
            self._last_obs = new_obs
            self._last_episode_starts = dones
        with torch.no_grad():
            values = self.policy.predict_values(obs_as_tensor(new_obs, self.device))
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True


def success_curve(episodes: list[Episode], budget: int, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Success rate against primitive steps: the fraction of successful episodes among those ending in each of
    ``bins`` equal windows of [0, budget] (a window where no episode ended repeats the previous value, 0 at first).

    Returns:
        (bins,) window ends in primitive steps (int64) and (bins,) success rates (float64).
    """
    edges = np.linspace(0, budget, bins + 1)
    rates = np.zeros(bins)
    previous = 0.0
    for b in range(bins):
        low = -1 if b == 0 else edges[b]
        inside = [e.success for e in episodes if low < e.primitive_steps <= edges[b + 1]]
        previous = float(np.mean(inside)) if inside else previous
        rates[b] = previous
    return edges[1:].astype(np.int64), rates


def success_auc(episodes: list[Episode], budget: int, bins: int = 20) -> float:
    """Area under :func:`success_curve`, normalised to [0, 1] (1: every episode succeeds from the start)."""
    return float(success_curve(episodes, budget, bins)[1].mean())


__all__ = ["Episode", "SMDPPPO", "SMDPRolloutBuffer", "success_auc", "success_curve"]
