"""prdc: our blocked exact computation against the ``prdc`` package, side by side on the same features.

One JSON line per sample count N (D = 1024, k = 5, float64 features as dgm-eval stores them): both times, their
ratio, the extra peak memory of each call (peak resident memory during the call minus the memory before it,
via /proc/self/clear_refs and VmHWM on Linux), and whether the four values are identical. Both sides run on
one thread (BLAS/OpenMP env vars, torch.set_num_threads(1), CPU affinity pinned to one core).

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
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from prdc import compute_prdc  # noqa: E402

from dgm_eval.metrics import prdc  # noqa: E402


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _measure(fn):
    """(seconds, extra peak MiB, result) of one call."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")  # reset VmHWM to the current RSS
        can_reset = True
    except OSError:
        can_reset = False
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM") if can_reset else float("nan")
    return seconds, (peak - before) / 1024, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000])
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--nearest-k", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    for n in args.sizes:
        rng = np.random.default_rng(n)
        real = rng.normal(size=(n, args.dim))
        fake = rng.normal(size=(n, args.dim)) + 0.02
        # Warm up both sides (library initialisation and BLAS buffers are not the call's memory).
        prdc(real[:50], fake[:50], nearest_k=args.nearest_k)
        with contextlib.redirect_stdout(io.StringIO()):
            compute_prdc(real[:50], fake[:50], args.nearest_k)
        ours_s, ours_mb, ours = _measure(lambda real=real, fake=fake: prdc(real, fake, nearest_k=args.nearest_k))
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints its sample counts
            peer_s, peer_mb, peer = _measure(lambda real=real, fake=fake: compute_prdc(real, fake, args.nearest_k))
        record = {
            "bench": "prdc",
            "n": n,
            "dim": args.dim,
            "k": args.nearest_k,
            "ours_s": round(ours_s, 3),
            "peer": "prdc.compute_prdc",
            "peer_s": round(peer_s, 3),
            "ratio": round(peer_s / ours_s, 2),
            "ours_extra_peak_mib": round(ours_mb, 1),
            "peer_extra_peak_mib": round(peer_mb, 1),
            "memory_ratio": round(ours_mb / peer_mb, 4) if peer_mb > 0 else None,
            "identical": all(float(peer[key]) == ours[key] for key in ours),
            "values": ours,
            "threads": {"torch": torch.get_num_threads(), "OMP/MKL/OPENBLAS": 1, "cpu_affinity": 1},
        }
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
