"""FD, fd_eff and FD∞ at N <= D: the Gram form against the dense D×D path they replaced, side by side.

At N = 300 and D = 3072 (the ``pixel`` encoder's 32x32x3), the dense path factors D×D covariances (and FD∞
repeats its product and ``eigvalsh`` for each of the 15 subsets); the Gram form works on 300×300 matrices.
One JSON line per metric: both times, their ratio (the figure; the machine is shared, so absolute times are
inflated) and the relative difference of the values. One thread everywhere (BLAS/OpenMP env vars, torch threads).

Run: ``uv run --no-sync python packages/dgm-eval/benchmarks/bench_fd_gram.py [--n 300 --dim 3072]``
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

from dgm_eval.metrics import fd_infinity, feature_statistics, frechet_distance, frechet_distance_eff  # noqa: E402
from dgm_eval.metrics.fd import _SqrtFactor, fd_from_statistics  # noqa: E402
from dgm_eval.metrics.fd_infinity import fd_infinity_sizes, fit_fd_infinity  # noqa: E402


def dense_fd(x_r, x_g) -> float:
    """The dense path (what ``frechet_distance`` ran before the Gram form): D×D statistics and factor."""
    return fd_from_statistics(feature_statistics(x_r), feature_statistics(x_g))


def dense_fd_eff(x_r, x_g) -> float:
    sa, sb = feature_statistics(x_r), feature_statistics(x_g)
    evals = torch.linalg.eigvals(sa.cov @ sb.cov)
    diff = sa.mean - sb.mean
    return float(diff.dot(diff) + torch.trace(sa.cov) + torch.trace(sb.cov) - 2.0 * torch.sqrt(evals).real.sum())


def dense_fd_infinity(x_r, x_g, seed: int = 0) -> float:
    sr = feature_statistics(x_r)
    g = torch.from_numpy(x_g)
    factor = _SqrtFactor(sr.cov)
    sizes = fd_infinity_sizes(g.shape[0])
    gen = torch.Generator().manual_seed(seed)
    draws = [torch.randperm(g.shape[0], generator=gen)[: int(n)] for n in sizes]
    return fit_fd_infinity(sizes, [fd_from_statistics(sr, feature_statistics(g[i]), factor=factor) for i in draws])


def _timed(fn, repeats: int) -> tuple[float, float]:
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--dim", type=int, default=3072)
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the Gram side (best time)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x_r = rng.uniform(size=(args.n, args.dim))  # pixel-like features in [0, 1]
    x_g = np.clip(x_r[rng.permutation(args.n)] + rng.normal(0, 0.1, size=(args.n, args.dim)), 0, 1)
    pairs = {
        "fd": (lambda: frechet_distance(x_r, x_g), lambda: dense_fd(x_r, x_g)),
        "fd_eff": (lambda: frechet_distance_eff(x_r, x_g), lambda: dense_fd_eff(x_r, x_g)),
        "fd_infinity": (lambda: fd_infinity(x_r, x_g, seed=0), lambda: dense_fd_infinity(x_r, x_g, seed=0)),
    }
    for name, (ours, dense) in pairs.items():
        ours_s, ours_v = _timed(ours, args.repeats)
        dense_s, dense_v = _timed(dense, 1)
        record = {
            "bench": name,
            "n": args.n,
            "dim": args.dim,
            "gram_s": round(ours_s, 4),
            "dense_s": round(dense_s, 3),
            "ratio": round(dense_s / ours_s, 1),
            "value": ours_v,
            "rel_diff_vs_dense": abs(ours_v - dense_v) / abs(dense_v),
            "threads": 1,
        }
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
