"""FD: our eigenvalue form against pytorch-fid's ``calculate_frechet_distance`` (scipy ``sqrtm``), side by side.

One JSON line per feature dimension D with both times, their ratio and the relative difference of the values.
Both sides run on one thread (BLAS/OpenMP env vars, torch.set_num_threads(1), CPU affinity pinned to one core):
LAPACK paths are much slower with oversubscribed threads on shared machines, and the ratio is the figure.

Run: ``uv run --all-packages python packages/dgm-eval/benchmarks/bench_fd.py [--dims 512 1024 2048]``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from pytorch_fid.fid_score import calculate_frechet_distance  # noqa: E402

from dgm_eval.metrics import GaussianStats, frechet_distance  # noqa: E402


def _random_stats(dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(2 * dim, dim)) @ rng.normal(size=(dim, dim)) / np.sqrt(dim) + rng.normal(size=dim)
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def _best_time(fn, repeats: int) -> tuple[float, float]:
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    for dim in args.dims:
        mu1, s1 = _random_stats(dim, 0)
        mu2, s2 = _random_stats(dim, 1)
        a = GaussianStats(torch.from_numpy(mu1), torch.from_numpy(s1))
        b = GaussianStats(torch.from_numpy(mu2), torch.from_numpy(s2))
        ours_s, ours = _best_time(lambda a=a, b=b: frechet_distance(a, b), args.repeats)
        peer_s, peer = _best_time(
            lambda mu1=mu1, s1=s1, mu2=mu2, s2=s2: calculate_frechet_distance(mu1, s1, mu2, s2), args.repeats
        )
        record = {
            "bench": "fd",
            "dim": dim,
            "ours_s": round(ours_s, 4),
            "peer": "pytorch_fid.calculate_frechet_distance (scipy sqrtm)",
            "peer_s": round(peer_s, 4),
            "ratio": round(peer_s / ours_s, 2),
            "rel_diff": abs(ours - peer) / abs(peer),
            "threads": {"torch": torch.get_num_threads(), "OMP/MKL/OPENBLAS": 1, "cpu_affinity": 1},
        }
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
