"""Landmarks success rate over seeds: accuracy >= 0.9, boundary F1 >= 0.8, 4 used options (+ at most 1 idle), and
beta_k > 0.5 at its landmark, < 0.2 on >= 90% of the option's other visits (spec; reference §6 item 11).

    OMP_NUM_THREADS=1 uv run --no-sync python packages/bnpo/benchmarks/landmarks_rate.py --recipe truncated \\
        --seeds 10 --out landmarks_truncated.jsonl

Recipes (1000 expert episodes of 30 steps per seed; the exact objective, batch 64, 500 epochs, entropy decay 0.99,
``tests/test_bnpo_thresholds.py``'s LANDMARKS_CONFIG): ``truncated`` fixed K = 5 (K_true + 1) and the best of 4
restarts by the exact training log-likelihood (no ground truth read); ``fixed4`` the same with K = 4 (K_true: no
spare option); ``grown`` the paper's growth from K = 1, one run. One JSON line per seed is appended as soon as it
is done.
"""

from __future__ import annotations

import time

import gymnasium as gym

import bnpo
from bnpo import metrics
from bnpo.fit import FitConfig, evaluate, fit

BASE = {"epochs": 500, "batch_size": 64, "objective": "exact", "entropy_decay": 0.99}
RECIPES = {
    "truncated": {**BASE, "nonparametric": False, "k": 5, "restarts": 4, "restart_select": "train"},
    "grown": {**BASE, "nonparametric": True},
    "fixed4": {**BASE, "nonparametric": False, "k": 4, "restarts": 4, "restart_select": "train"},
}


def landmarks_run(seed: int, recipe: str) -> dict:
    """One seed: collect Landmarks, fit with ``recipe``, return the figures and whether every one is met."""
    env = gym.make("bnpo/Landmarks-v0")
    data = bnpo.collect(env, bnpo.make_expert(env, seed=seed), 1000, seed=seed, env_id="bnpo/Landmarks-v0")
    windows = data.windows()
    started, cpu = time.perf_counter(), time.process_time()
    result = fit(data, FitConfig(seed=seed, **RECIPES[recipe]))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    model = result.model
    scores = evaluate(model, windows)
    checks = metrics.landmark_terminations(model, windows)
    terminations_met = len(checks) == 4 and all(
        c["beta_min_at_landmark"] > 0.5 and c["low_elsewhere"] >= 0.9 for c in checks
    )
    return {
        "recipe": recipe,
        "seed": seed,
        "accuracy": round(scores["accuracy"], 4),
        "boundary_f1": round(scores["boundary_f1"], 4),
        "K": model.n_options,
        "used_options": scores["used_options"],
        "usage": scores["usage"],
        "loglik_per_step": round(scores["loglik_per_step"], 5),
        "terminations_met": terminations_met,
        "met": bool(
            scores["accuracy"] >= 0.9
            and scores["boundary_f1"] >= 0.8
            and scores["used_options"] == 4
            and model.n_options <= 5
            and terminations_met
        ),
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "terminations": checks,
        "restarts": result.selection,
    }


if __name__ == "__main__":
    from rate_study import main

    main(landmarks_run, RECIPES, "truncated", __doc__.splitlines()[0], ("restarts", "terminations"))
