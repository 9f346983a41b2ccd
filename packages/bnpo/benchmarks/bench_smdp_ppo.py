"""SMDP PPO steps/s against plain Stable-Baselines3 PPO on the same env, side by side in one process, one thread.

    OMP_NUM_THREADS=1 uv run --no-sync python packages/bnpo/benchmarks/bench_smdp_ppo.py

Both learn 20,000 decisions on bnpo/LandmarksGoal-v0 with primitive actions (4 envs, n_steps 128, batch 64, 4
epochs), alternating the order over 3 repeats. Each run is timed in process CPU time (one thread: what the run costs,
and less sensitive than wall time to other jobs on a shared machine) and in wall time; prints the per-round ratios
SMDP / SB3 and the median steps/s of each.
"""

from __future__ import annotations

import json
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger

import bnpo  # noqa: F401  (registers the envs)
from bnpo.rl import SMDPPPO

STEPS = 20_000


def _rate(cls) -> tuple[float, float]:
    """(steps per CPU second, steps per wall second) of one run."""
    env = make_vec_env(lambda: gym.make("bnpo/LandmarksGoal-v0"), n_envs=4, seed=0)
    agent = cls("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=4, seed=0, device="cpu")
    agent.set_logger(Logger(folder=None, output_formats=[]))  # same logger both sides (SB3's own makes an SB3-* folder)
    cpu, wall = time.process_time(), time.perf_counter()
    agent.learn(STEPS)
    return STEPS / (time.process_time() - cpu), STEPS / (time.perf_counter() - wall)


if __name__ == "__main__":
    torch.set_num_threads(1)
    rates: dict[str, list[tuple[float, float]]] = {"smdp": [], "sb3": []}
    for repeat in range(3):
        order = (("smdp", SMDPPPO), ("sb3", PPO)) if repeat % 2 == 0 else (("sb3", PPO), ("smdp", SMDPPPO))
        for name, cls in order:
            rates[name].append(_rate(cls))
        cpu_ratio = rates["smdp"][-1][0] / rates["sb3"][-1][0]
        wall_ratio = rates["smdp"][-1][1] / rates["sb3"][-1][1]
        print(json.dumps({"round": repeat, "ratio_cpu": round(cpu_ratio, 3), "ratio_wall": round(wall_ratio, 3)}))
    summary = {}
    for i, clock in enumerate(("cpu", "wall")):
        smdp = float(np.median([r[i] for r in rates["smdp"]]))
        sb3 = float(np.median([r[i] for r in rates["sb3"]]))
        summary |= {
            f"smdp_steps_per_{clock}_s": round(smdp),
            f"sb3_steps_per_{clock}_s": round(sb3),
            f"ratio_{clock}": round(smdp / sb3, 3),
        }
    print(json.dumps(summary))
