"""Seconds per 500 epochs of nonparametric fitting on Room(6) (1000 trajectories), on one CPU thread.

Ours is timed for ``BNPO_BENCH_EPOCHS`` epochs (default 100) and scaled to 500. The peer is the public code
(layer6ai-labs/BNPO, commit 0173037): when ``BNPO_PUBLIC_CODE`` points to a checkout of it, its training loop is
timed on the same data in the same process (its per-epoch prints are silenced); otherwise the reference's measured
figure (about 42 s per 500 epochs on one CPU thread, reference §2.4) is reported as ``peer_s`` with
``peer_source = "reference"``. Prints one JSON line.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import bnpo  # noqa: E402
from bnpo.fit import FitConfig, fit  # noqa: E402

REFERENCE_SECONDS_PER_500 = 42.0


def _ours(data: bnpo.Dataset, epochs: int) -> float:
    fit(data, FitConfig(epochs=1, seed=0))  # warm-up: first-call imports (torch._dynamo via the optimiser)
    started = time.perf_counter()
    fit(data, FitConfig(epochs=epochs, seed=0))
    return (time.perf_counter() - started) * 500 / epochs


def _peer(path: str, data: bnpo.Dataset, epochs: int) -> float:
    """Time the public code's BNPOptions.train on the same trajectories (6 states, 5 one-hot actions)."""
    sys.path.insert(0, path)
    from bnp_options import BNPOptions  # type: ignore[import-not-found]

    windows = data.windows()
    states = windows["states"].numpy()
    n_actions = data.n_actions
    last = states[:, -1:].copy()  # the public loader expects T + 1 states and drops the last
    states = np.concatenate([states, last], axis=1)
    actions = np.eye(n_actions, dtype=np.float32)[windows["actions"].numpy()]
    kwargs = {
        "K": 1,
        "random_seed": 0,
        "tolerance": 0.5,
        "check_options_usage": 10,
        "fixed_options": False,
        "hidden_layer_sizes_policy": [16],
        "hidden_layer_sizes_termination": [16],
        "LSTM_hidden_layer_size": 32,
        "LSTM_MLP_hidden_layer_sizes": [32, 32],
        "action_space": "discrete",
        "learning_rate": 1e-3,
        "clip": 5.0,
        "batch_size": 512,
        "max_epochs": epochs,
        "relaxation_type": "GS",
        "temperature": 1.0,
        "temperature_ratio": 0.999,
        "entropy_factor": 5.0,
        "entropy_ratio": 0.999,
    }
    model = BNPOptions(
        (states, actions, None), states.shape[-1], n_actions, torch.device("cpu"), np.random.RandomState(0), **kwargs
    )
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        model.train(verbose=False)
    return (time.perf_counter() - started) * 500 / epochs


def main() -> None:
    torch.set_num_threads(1)
    epochs = int(os.environ.get("BNPO_BENCH_EPOCHS", "100"))
    env = gym.make("bnpo/Room-v0", n_rooms=6)
    data = bnpo.collect(env, bnpo.make_expert(env, seed=0), 1000, seed=0)
    ours = _ours(data, epochs)
    peer_path = os.environ.get("BNPO_PUBLIC_CODE")
    if peer_path:
        peer, source = _peer(peer_path, data, epochs), "public code, same process"
    else:
        peer, source = REFERENCE_SECONDS_PER_500, "reference §2.4 (measured elsewhere)"
    print(
        json.dumps(
            {
                "case": "fit Room(6), 1000 trajectories x 5 steps, nonparametric, batch 512",
                "epochs_timed": epochs,
                "threads": torch.get_num_threads(),
                "ours_s_per_500_epochs": round(ours, 2),
                "peer_s_per_500_epochs": round(peer, 2),
                "peer_source": source,
                "ratio_peer_over_ours": round(peer / ours, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
