"""Seconds per 500 epochs of nonparametric fitting on Room(6) (1000 trajectories), on one CPU thread.

Both sides train ``BNPO_BENCH_EPOCHS`` epochs (default 500; a smaller number is scaled to 500) from the same data.
The peer is the public code (layer6ai-labs/BNPO, commit 0173037): when ``BNPO_PUBLIC_CODE`` points to a checkout of
it, its training loop is timed on the same data in the same process (its per-epoch prints are silenced), alternating
with ours for ``BNPO_BENCH_REPEATS`` rounds (default 3), each side warmed up by a one-epoch fit first. Each round
reports both sides' process CPU time (one thread, so CPU time is what the fit costs, and it moves less than wall time
when other jobs share the machine) and wall time, and the ratio peer / ours; the summary is the median round.
Without the public code the reference's measured figure (about 42 s per 500 epochs on one CPU thread, reference
§2.4) is the peer (``peer_source = "reference"``). Prints one JSON line per round and a summary line.
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


def _timed(run) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``run()``."""
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    return time.process_time() - cpu, time.perf_counter() - wall


def _ours(data: bnpo.Dataset, epochs: int) -> tuple[float, float]:
    fit(data, FitConfig(epochs=1, seed=0))  # warm-up: first-call imports (torch._dynamo via the optimiser)
    return _timed(lambda: fit(data, FitConfig(epochs=epochs, seed=0)))


def _peer(path: str, data: bnpo.Dataset, epochs: int) -> tuple[float, float]:
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

    def build(max_epochs: int):
        return BNPOptions(
            (states, actions, None),
            states.shape[-1],
            n_actions,
            torch.device("cpu"),
            np.random.RandomState(0),
            **{**kwargs, "max_epochs": max_epochs},
        )

    with contextlib.redirect_stdout(io.StringIO()):
        build(1).train(verbose=False)  # warm-up, as for ours
        model = build(epochs)
        return _timed(lambda: model.train(verbose=False))


def main() -> None:
    torch.set_num_threads(1)
    epochs = int(os.environ.get("BNPO_BENCH_EPOCHS", "500"))
    repeats = int(os.environ.get("BNPO_BENCH_REPEATS", "3"))
    scale = 500 / epochs
    env = gym.make("bnpo/Room-v0", n_rooms=6)
    data = bnpo.collect(env, bnpo.make_expert(env, seed=0), 1000, seed=0)
    peer_path = os.environ.get("BNPO_PUBLIC_CODE")
    rounds = []
    for repeat in range(repeats if peer_path else 1):
        ours_cpu, ours_wall = _ours(data, epochs)
        if peer_path:
            peer_cpu, peer_wall = _peer(peer_path, data, epochs)
        else:
            peer_cpu = peer_wall = REFERENCE_SECONDS_PER_500 / scale
        row = {
            "round": repeat,
            "ours_cpu_s_per_500_epochs": round(ours_cpu * scale, 2),
            "peer_cpu_s_per_500_epochs": round(peer_cpu * scale, 2),
            "ratio_cpu": round(peer_cpu / ours_cpu, 2),
            "ours_wall_s_per_500_epochs": round(ours_wall * scale, 2),
            "peer_wall_s_per_500_epochs": round(peer_wall * scale, 2),
            "ratio_wall": round(peer_wall / ours_wall, 2),
        }
        rounds.append(row)
        print(json.dumps(row), flush=True)
    print(
        json.dumps(
            {
                "case": "fit Room(6), 1000 trajectories x 5 steps, nonparametric, batch 512",
                "epochs_timed": epochs,
                "threads": torch.get_num_threads(),
                "peer_source": "public code, same process, alternating" if peer_path else "reference §2.4 (elsewhere)",
                "rounds": len(rounds),
                "ratio_cpu_per_round": [r["ratio_cpu"] for r in rounds],
                "ratio_wall_per_round": [r["ratio_wall"] for r in rounds],
                "ratio_cpu_median": float(np.median([r["ratio_cpu"] for r in rounds])),
                "ratio_wall_median": float(np.median([r["ratio_wall"] for r in rounds])),
            }
        )
    )


if __name__ == "__main__":
    main()
