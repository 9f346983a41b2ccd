"""prdc: our blocked exact computation against the ``prdc`` package, side by side on the same features.

One JSON line per sample count N (D = 1024, k = 5, float64 features as dgm-eval stores them): both times (wall
clock and the process's CPU time), their ratios, the extra peak memory of each call (peak resident memory during
the call minus the memory before it, via /proc/self/clear_refs and VmHWM on Linux), and whether the four values
are identical. Each measurement runs in a fresh process (after a small warm-up call), alternating ours and the
peer ``--repeats`` times (default 3); the ratio of each pair of runs is reported as median and range. CPU time is
the figure to read on a shared machine: other processes' load stretches wall time, not CPU time. Both sides run
on one thread (BLAS/OpenMP env vars, torch.set_num_threads(1)).

Run: ``uv run --all-packages python packages/dgm-eval/benchmarks/bench_prdc.py [--sizes 2000 5000 10000]``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import prdc.prdc as prdc_module  # noqa: E402
import sklearn.metrics  # noqa: E402
import torch  # noqa: E402
from prdc import compute_prdc  # noqa: E402

from dgm_eval.metrics import prdc  # noqa: E402
from dgm_eval.metrics.distance_blocks import product_dtype  # noqa: E402


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _measure(fn):
    """(wall seconds, extra peak MiB, result, CPU seconds) of one call."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")  # reset VmHWM to the current RSS
        can_reset = True
    except OSError:
        can_reset = False
    before = _status_kib("VmRSS")
    start, cpu_start = time.perf_counter(), time.process_time()
    result = fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak = _status_kib("VmHWM") if can_reset else float("nan")
    return seconds, (peak - before) / 1024, result, cpu


def _run_side(side: str, n: int, dim: int, nearest_k: int, peer_n_jobs: int, queue) -> None:
    """One measurement in a fresh process (so one side's freed memory cannot hide the other's peak)."""
    torch.set_num_threads(1)
    if side == "peer" and peer_n_jobs != 8:
        # The package hard-codes sklearn.metrics.pairwise_distances(..., n_jobs=8) (8 Python threads splitting the
        # columns); for a one-thread comparison the same call runs with n_jobs=peer_n_jobs.
        def pairwise(data_x, data_y=None):
            return sklearn.metrics.pairwise_distances(
                data_x, data_x if data_y is None else data_y, metric="euclidean", n_jobs=peer_n_jobs
            )

        prdc_module.compute_pairwise_distance = pairwise
    rng = np.random.default_rng(n)
    real = rng.normal(size=(n, dim))
    fake = rng.normal(size=(n, dim)) + 0.02
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints its sample counts
        if side == "ours":
            prdc(real[:50], fake[:50], nearest_k=nearest_k)  # warm-up: library and BLAS buffers
            seconds, mib, values, cpu = _measure(lambda: prdc(real, fake, nearest_k=nearest_k))
        else:
            compute_prdc(real[:50], fake[:50], nearest_k)
            seconds, mib, values, cpu = _measure(lambda: compute_prdc(real, fake, nearest_k))
    queue.put((seconds, mib, {key: float(value) for key, value in values.items()}, cpu))


def _measure_in_child(
    side: str, n: int, dim: int, nearest_k: int, peer_n_jobs: int
) -> tuple[float, float, dict[str, float], float]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run_side, args=(side, n, dim, nearest_k, peer_n_jobs, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000])
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--nearest-k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per side (ratios: median, range)")
    parser.add_argument(
        "--peer-n-jobs", type=int, default=1, help="n_jobs of the peer's sklearn call (the package hard-codes 8)"
    )
    args = parser.parse_args()
    dtype = product_dtype(torch.device("cpu"), args.dim)
    for n in args.sizes:
        runs: dict[str, list[tuple[float, float, dict[str, float], float]]] = {"ours": [], "peer": []}
        for _ in range(args.repeats):
            for side in ("ours", "peer"):
                runs[side].append(_measure_in_child(side, n, args.dim, args.nearest_k, args.peer_n_jobs))
        wall = [peer[0] / ours[0] for ours, peer in zip(runs["ours"], runs["peer"], strict=True)]
        cpu = [peer[3] / ours[3] for ours, peer in zip(runs["ours"], runs["peer"], strict=True)]
        ours_mb = max(r[1] for r in runs["ours"])
        peer_mb = min(r[1] for r in runs["peer"])
        ours, peer = runs["ours"][0][2], runs["peer"][0][2]
        record = {
            "bench": "prdc",
            "n": n,
            "dim": args.dim,
            "k": args.nearest_k,
            "products": str(dtype).removeprefix("torch."),
            "peer": f"prdc.compute_prdc (sklearn n_jobs={args.peer_n_jobs})",
            "cpu_ratio_median": round(statistics.median(cpu), 2),
            "cpu_ratio_range": [round(min(cpu), 2), round(max(cpu), 2)],
            "wall_ratio_median": round(statistics.median(wall), 2),
            "wall_ratio_range": [round(min(wall), 2), round(max(wall), 2)],
            "ours_cpu_s": [round(r[3], 2) for r in runs["ours"]],
            "peer_cpu_s": [round(r[3], 2) for r in runs["peer"]],
            "ours_wall_s": [round(r[0], 2) for r in runs["ours"]],
            "peer_wall_s": [round(r[0], 2) for r in runs["peer"]],
            "ours_extra_peak_mib_max": round(ours_mb, 1),
            "peer_extra_peak_mib_min": round(peer_mb, 1),
            "memory_ratio": round(ours_mb / peer_mb, 4) if peer_mb > 0 else None,
            "identical": all(all(r[2] == peer for r in runs[side]) for side in runs),
            "values": ours,
            "repeats": args.repeats,
            "threads": {"torch": 1, "OMP/MKL/OPENBLAS": 1, "process": "fresh per measurement"},
        }
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
