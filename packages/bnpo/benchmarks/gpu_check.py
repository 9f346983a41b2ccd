"""GPU check of bnpo (issue 12): ``bnpo.fit`` for a few epochs on the device, and the exact log-likelihood of one
model on the same data on the CPU and on the device.

``run(device, tiny)`` is imported by the root ``tools/gpu_check.py`` by file path. Data are procedural (the Room
expert, no network); weights are the fitted or freshly initialised model's. Agreement: the model's forward passes are
float32 on both devices and the forward algorithm float64, so per-trajectory log-likelihoods must agree to float32
accuracy (|diff| <= 1e-4 + 1e-5 |loglik|). Throughputs: fit epochs/s and trajectories/s (relaxed and exact
objectives), log-likelihood trajectories/s.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import torch

import bnpo
from bnpo.fit import FitConfig, fit


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(device: str, tiny: bool) -> dict[str, Any]:
    """Fit on ``device`` and compare its exact log-likelihood with the CPU's; see the module docstring.

    Args:
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        tiny: Room(3), 64 episodes, 3 epochs (seconds on a CPU); else Room(6), 1000 episodes, 30 epochs.

    Returns:
        JSON-ready dict: ``device``, sizes, ``fit_epochs_per_s`` and ``fit_trajectories_per_s`` per objective,
        ``loglik_trajectories_per_s``, ``loglik_max_abs_diff`` (device vs CPU), ``passed`` and ``peak_memory_mib``
        (``torch.cuda.max_memory_allocated``; None off CUDA).
    """
    dev = torch.device(device)
    n_rooms, episodes, epochs = (3, 64, 3) if tiny else (6, 1000, 30)
    env = gym.make("bnpo/Room-v0", n_rooms=n_rooms)
    data = bnpo.collect(env, bnpo.make_expert(env, seed=0), episodes, seed=0, env_id="bnpo/Room-v0")
    windows = data.windows()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    result: dict[str, Any] = {"device": str(dev), "tiny": tiny, "episodes": episodes, "epochs": epochs}
    model = None
    if not tiny:  # CUDA context, cuDNN LSTM plans and allocator warm-up stay out of the timings
        fit(data, FitConfig(nonparametric=False, k=n_rooms, epochs=1, holdout_fraction=0.0), device=dev)
    for objective in ("relaxed", "exact"):
        config = FitConfig(nonparametric=False, k=n_rooms, epochs=epochs, objective=objective, holdout_fraction=0.0)
        _sync(dev)
        started = time.perf_counter()
        fitted = fit(data, config, device=dev).model
        _sync(dev)
        seconds = time.perf_counter() - started
        result[f"fit_{objective}_epochs_per_s"] = epochs / seconds
        result[f"fit_{objective}_trajectories_per_s"] = epochs * episodes / seconds
        if model is None:
            model = fitted
    states, actions = windows["states"], windows["actions"]
    on_device = model.to(dev)
    _sync(dev)
    started = time.perf_counter()
    loglik_device = on_device.log_likelihood(states.to(dev), actions.to(dev)).cpu()
    _sync(dev)
    result["loglik_trajectories_per_s"] = episodes / (time.perf_counter() - started)
    loglik_cpu = model.to("cpu").log_likelihood(states, actions)
    diff = (loglik_device - loglik_cpu).abs()
    tolerance = 1e-4 + 1e-5 * loglik_cpu.abs()
    result["loglik_max_abs_diff"] = float(diff.max())
    result["loglik_mean_per_step"] = float(loglik_cpu.mean()) / states.shape[1]
    result["passed"] = bool((diff <= tolerance).all())
    result["peak_memory_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    return result


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "cpu", tiny="--full" not in sys.argv), indent=2))
