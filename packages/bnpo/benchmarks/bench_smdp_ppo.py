"""SMDP PPO steps/s against plain Stable-Baselines3 PPO on the same env, side by side in one process, one thread.

    OMP_NUM_THREADS=1 uv run --no-sync python packages/bnpo/benchmarks/bench_smdp_ppo.py

Both learn 20,000 decisions on bnpo/LandmarksGoal-v0 with primitive actions (4 envs, n_steps 128, batch 64, 4
epochs), alternating the order over 3 repeats; prints the median steps/s of each and the ratio SMDP / SB3.
"""

from __future__ import annotations

import json
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

import bnpo  # noqa: F401  (registers the envs)
from bnpo.rl import SMDPPPO

STEPS = 20_000


def _rate(cls) -> float:
    env = make_vec_env(lambda: gym.make("bnpo/LandmarksGoal-v0"), n_envs=4, seed=0)
    agent = cls("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=4, seed=0, device="cpu")
    started = time.perf_counter()
    agent.learn(STEPS)
    return STEPS / (time.perf_counter() - started)


if __name__ == "__main__":
    torch.set_num_threads(1)
    rates: dict[str, list[float]] = {"smdp": [], "sb3": []}
    for repeat in range(3):
        order = (("smdp", SMDPPPO), ("sb3", PPO)) if repeat % 2 == 0 else (("sb3", PPO), ("smdp", SMDPPPO))
        for name, cls in order:
            rates[name].append(_rate(cls))
    smdp, sb3 = float(np.median(rates["smdp"])), float(np.median(rates["sb3"]))
    print(json.dumps({"smdp_steps_per_s": round(smdp), "sb3_steps_per_s": round(sb3), "ratio": round(smdp / sb3, 3)}))
