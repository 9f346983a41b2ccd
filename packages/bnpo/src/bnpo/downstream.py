"""Downstream RL with and without learned options: SMDP PPO runs over seeds, success curves and their AUC.

One run trains :class:`bnpo.rl.SMDPPPO` (Stable-Baselines3 PPO with the SMDP buffer) for a budget of **primitive
environment steps** on ``n_envs`` copies of an env, either with primitive actions only or with the options of a
fitted model added (:class:`bnpo.options.OptionsWrapper`). Every finished training episode is recorded; the
summary is the success-vs-primitive-steps curve (:func:`bnpo.rl.success_curve`) and its normalised area (AUC).

Conditions of :func:`compare`: ``options`` (primitive actions + the fitted model's options), ``primitive``
(primitive actions only) and ``untrained_options`` (primitive actions + the options of an untrained model of the
same size, :func:`untrained_like`: the control that tells learned skills from merely having temporally extended
actions). :func:`rl_job` is the ``bnpo rl`` job: it writes a run folder.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from bnpo.model import OptionModel, OptionModelConfig
from bnpo.options import DEFAULT_OPTION_STEPS, OptionsWrapper, check_compatible
from sixlab_shared import RunDir, UserError, atomic_write_json

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
        if self.batch_size > self.n_steps * self.n_envs:
            raise UserError(
                f"invalid rl option batch_size={self.batch_size}: must be <= n_steps x n_envs = "
                f"{self.n_steps * self.n_envs} (the decisions of one rollout)"
            )


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


CONDITIONS = ("options", "primitive", "untrained_options")
"""The conditions :func:`compare` knows, in the order it runs them."""
UNTRAINED_SEED = 7
"""Initialisation seed of the untrained control model (the Landmarks and GoToObj studies' 7)."""


def untrained_like(model: OptionModel, seed: int = UNTRAINED_SEED) -> OptionModel:
    """An untrained :class:`OptionModel` with ``model``'s observation size, action count and number of options
    (default sizes otherwise), initialised from ``seed``: the control condition's options."""
    config = OptionModelConfig(
        obs_dim=model.config.obs_dim, n_actions=model.config.n_actions, n_options=model.n_options, seed=seed
    )
    return OptionModel(config)


def compare(
    env_id: str,
    model: OptionModel | None,
    config: DownstreamConfig,
    *,
    env_kwargs: dict[str, Any] | None = None,
    conditions: tuple[str, ...] = ("options", "primitive"),
    device: str | None = None,
) -> dict[str, Any]:
    """Runs of every condition over ``config.seeds``: ``options`` and ``untrained_options`` need ``model``;
    ``primitive`` (see the module docstring).

    Returns:
        dict with ``config``, ``env``, and per condition ``runs`` (see :func:`train_agent`) and ``auc_mean``,
        ``auc_std`` (population std over seeds), ``auc`` (per seed).
    """
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise UserError(f"unknown downstream condition(s) {', '.join(unknown)}; known: {', '.join(CONDITIONS)}")
    if model is None and any(c != "primitive" for c in conditions):
        raise UserError("the options condition needs a fitted model (--options MODEL)")
    models = {"options": model, "primitive": None}
    if "untrained_options" in conditions:
        models["untrained_options"] = untrained_like(model)
    result: dict[str, Any] = {"env": env_id, "env_kwargs": env_kwargs or {}, "config": asdict(config)}
    for condition in conditions:
        runs = []
        for seed in config.seeds:
            agent_model = models[condition]
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


def rl_job(
    env_id: str,
    out: str | os.PathLike[str],
    config: DownstreamConfig,
    *,
    options: str | os.PathLike[str] | None = None,
    baseline: bool = True,
    control: bool = False,
    env_kwargs: dict[str, Any] | None = None,
    overwrite: bool = False,
    device: str | None = None,
) -> dict[str, Any]:
    """The ``bnpo rl`` job: downstream SMDP PPO on ``env_id`` over ``config.seeds``, with the options of the model
    at ``options`` (and, with ``baseline``, primitive actions only as well; with ``control``, the untrained-options
    control too), or primitive actions only when ``options`` is None.

    Writes ``config.json``, ``curves.json`` (every run's episodes and curve), ``curves.png`` (success against
    primitive steps, mean ± std over seeds) and ``summary.json`` (AUC per condition).

    Raises:
        UserError: the env cannot be made, the model does not exist or does not fit the env, bad settings,
            ``control`` without a model, or ``out`` holds a run without ``overwrite``.
    """
    from bnpo.compile.fit import load_any_model
    from bnpo.fit import checkpoint_file
    from bnpo.plots import plot_downstream

    model = None
    if options is not None:
        model_file = checkpoint_file(options)
        if not model_file.is_file():
            raise UserError(f"--options {str(options)!r} is neither a checkpoint nor a run directory holding one")
        model = load_any_model(model_file)
    elif control:
        raise UserError("--control compares with the options of --options MODEL; pass --options")
    probe = make_env(env_id, env_kwargs)
    if model is not None:
        check_compatible(probe, model)
    elif not isinstance(probe.action_space, gym.spaces.Discrete):
        raise UserError(f"bnpo rl needs a Discrete action space, {env_id!r} has {probe.action_space}")
    probe.close()
    if model is None:
        conditions: tuple[str, ...] = ("primitive",)
    else:
        conditions = ("options",) + (("primitive",) if baseline else ()) + (("untrained_options",) if control else ())
    run = RunDir(out, overwrite=overwrite, flags=("--overwrite",))
    run.write_config(
        {"rl": dataclasses.asdict(config), "env": env_id, "env_kwargs": env_kwargs or {}, "options": str(options)},
        seed=config.seeds[0],
    )
    result = compare(env_id, model, config, env_kwargs=env_kwargs, conditions=conditions, device=device)
    atomic_write_json(run.file("curves.json"), result)
    plot_downstream(run.file("curves.png"), result)
    summary = {"env": env_id, "seeds": config.seeds, "steps": config.steps}
    for condition in conditions:
        summary[condition] = {k: result[condition][k] for k in ("auc", "auc_mean", "auc_std")}
    run.write_summary(summary)
    return summary


def rl_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) rows of ``bnpo rl``'s table: AUC mean ± std per condition."""
    rows = [("env", summary["env"]), ("seeds", str(len(summary["seeds"]))), ("primitive_steps", str(summary["steps"]))]
    for condition in CONDITIONS:
        if condition in summary:
            part = summary[condition]
            rows.append((f"auc_{condition}", f"{part['auc_mean']:.3f} ± {part['auc_std']:.3f}"))
    return rows


__all__ = [
    "CONDITIONS",
    "DownstreamConfig",
    "compare",
    "make_env",
    "rl_job",
    "rl_rows",
    "train_agent",
    "untrained_like",
]
