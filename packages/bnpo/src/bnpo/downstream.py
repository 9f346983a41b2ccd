"""Downstream RL with and without learned options: SMDP PPO runs over seeds, success curves and their AUC.

One run trains :class:`bnpo.rl.SMDPPPO` (Stable-Baselines3 PPO with the SMDP buffer) for a budget of **primitive
environment steps** on ``n_envs`` copies of an env, either with primitive actions only or with the options of a
fitted model added (:class:`bnpo.options.OptionsWrapper`). Every finished training episode is recorded; the
summary is the success-vs-primitive-steps curve (:func:`bnpo.rl.success_curve`) and its normalised area (AUC).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from bnpo.model import OptionModel
from bnpo.options import DEFAULT_OPTION_STEPS, OptionsWrapper, check_compatible
from sixlab_shared import UserError

logger = logging.getLogger(__name__)


@dataclass
class DownstreamConfig:
    """Settings of downstream runs (the ``bnpo rl`` options map onto this)."""

    steps: int = 20_000
    """Budget of primitive environment steps per run (all envs together)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    """One run per seed and condition (PPO initialisation, sampling and env resets)."""
    option_steps: int = DEFAULT_OPTION_STEPS
    """Cap on the primitive steps of one option call (the public code's 15)."""
    beta_threshold: float | None = 0.5
    """An option stops where beta > this; None samples Bernoulli(beta)."""
    gamma: float = 0.99
    """Discount per primitive step (inner returns and the SMDP bootstrap)."""
    gae_lambda: float = 0.95
    """GAE lambda per primitive step."""
    lr: float = 3e-4
    """PPO (Adam) learning rate."""
    n_envs: int = 4
    """Parallel env copies (SB3 DummyVecEnv, one process)."""
    n_steps: int = 128
    """Decisions per env per PPO rollout."""
    batch_size: int = 64
    """PPO minibatch size."""
    n_epochs: int = 4
    """PPO epochs per rollout."""
    ent_coef: float = 0.01
    """PPO entropy bonus."""
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Policy and value MLP sizes."""
    bins: int = 20
    """Windows of the success curve."""

    def __post_init__(self) -> None:
        checks = {
            "steps": (self.steps >= 1, "an integer >= 1"),
            "seeds": (len(self.seeds) >= 1 and all(s >= 0 for s in self.seeds), "a non-empty list of seeds >= 0"),
            "option_steps": (self.option_steps >= 1, "an integer >= 1"),
            "beta_threshold": (self.beta_threshold is None or 0 <= self.beta_threshold < 1, "in [0, 1) or unset"),
            "gamma": (0 < self.gamma <= 1, "in (0, 1]"),
            "gae_lambda": (0 <= self.gae_lambda <= 1, "in [0, 1]"),
            "lr": (self.lr > 0, "> 0"),
            "n_envs": (self.n_envs >= 1, "an integer >= 1"),
            "n_steps": (self.n_steps >= 2, "an integer >= 2"),
            "batch_size": (self.batch_size >= 2, "an integer >= 2"),
            "n_epochs": (self.n_epochs >= 1, "an integer >= 1"),
            "ent_coef": (self.ent_coef >= 0, ">= 0"),
            "hidden": (len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), "a non-empty list of sizes"),
            "bins": (self.bins >= 1, "an integer >= 1"),
        }
        for name, (ok, requirement) in checks.items():
            if not ok:
                raise UserError(f"invalid rl option {name}={getattr(self, name)!r}: must be {requirement}")


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None) -> gym.Env:
    """``gym.make`` with one-line errors."""
    try:
        return gym.make(env_id, **(env_kwargs or {}))
    except (gym.error.Error, TypeError, ValueError) as err:
        raise UserError(f"cannot make environment {env_id!r}: {' '.join(str(err).split())}") from err


def train_agent(
    env_id: str,
    model: OptionModel | None,
    seed: int,
    config: DownstreamConfig,
    *,
    env_kwargs: dict[str, Any] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """One SMDP PPO run on ``env_id`` with the options of ``model`` (None: primitive actions only).

    Returns:
        dict with ``seed``, ``options`` (bool), ``primitive_steps``, ``decisions``, ``seconds``, ``episodes`` (list of
        [primitive_steps, decisions, length, return, success]), ``curve`` ({``steps``, ``success``}) and ``auc``.
    """
    from stable_baselines3.common.env_util import make_vec_env

    from bnpo.rl import SMDPPPO, success_curve

    probe = make_env(env_id, env_kwargs)
    if model is not None:
        check_compatible(probe, model)
    probe.close()

    def factory() -> gym.Env:
        env = make_env(env_id, env_kwargs)
        if model is None:
            return env
        return OptionsWrapper(
            env, model, option_steps=config.option_steps, gamma=config.gamma, beta_threshold=config.beta_threshold
        )

    started = time.perf_counter()
    vec_env = make_vec_env(factory, n_envs=config.n_envs, seed=seed)
    agent = SMDPPPO(
        "MlpPolicy",
        vec_env,
        learning_rate=config.lr,
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        ent_coef=config.ent_coef,
        policy_kwargs={"net_arch": list(config.hidden)},
        seed=seed,
        device=device or "cpu",  # SB3's "auto" would pick CUDA, slower than the CPU for these small MLPs
        primitive_budget=config.steps,
    )
    with torch.random.fork_rng(devices=[]):  # SB3 seeds the global generators: keep the caller's untouched
        state = np.random.get_state()
        agent.learn(total_timesteps=config.steps)
        np.random.set_state(state)
    vec_env.close()
    ends, rates = success_curve(agent.episodes, config.steps, config.bins)
    return {
        "seed": seed,
        "options": model is not None,
        "primitive_steps": agent.primitive_steps,
        "decisions": agent.num_timesteps,
        "seconds": round(time.perf_counter() - started, 2),
        "episodes": [[e.primitive_steps, e.decisions, e.length, e.ret, e.success] for e in agent.episodes],
        "curve": {"steps": ends.tolist(), "success": rates.tolist()},
        "auc": float(rates.mean()),
    }


def compare(
    env_id: str,
    model: OptionModel | None,
    config: DownstreamConfig,
    *,
    env_kwargs: dict[str, Any] | None = None,
    conditions: tuple[str, ...] = ("options", "primitive"),
    device: str | None = None,
) -> dict[str, Any]:
    """Runs of every condition (``options`` needs ``model``; ``primitive``) over ``config.seeds``.

    Returns:
        dict with ``config``, ``env``, and per condition ``runs`` (see :func:`train_agent`) and ``auc_mean``,
        ``auc_std`` (population std over seeds), ``auc`` (per seed).
    """
    if "options" in conditions and model is None:
        raise UserError("the options condition needs a fitted model (--options MODEL)")
    result: dict[str, Any] = {"env": env_id, "env_kwargs": env_kwargs or {}, "config": asdict(config)}
    for condition in conditions:
        runs = []
        for seed in config.seeds:
            agent_model = model if condition == "options" else None
            run = train_agent(env_id, agent_model, seed, config, env_kwargs=env_kwargs, device=device)
            logger.info("%s seed %d: AUC %.3f in %.1f s", condition, seed, run["auc"], run["seconds"])
            runs.append(run)
        aucs = np.array([r["auc"] for r in runs])
        result[condition] = {
            "runs": runs,
            "auc": aucs.tolist(),
            "auc_mean": float(aucs.mean()),
            "auc_std": float(aucs.std()),
        }
    return result


__all__ = ["DownstreamConfig", "compare", "make_env", "train_agent"]
