"""Sampling cost: K-step student vs the teacher's N-step DDIM solve (NFE, wall time), and our DDIM solver vs
diffusers' DDIMScheduler loop on the same UNet and noise (the peer), one process, CPU, 1 thread.

Usage: uv run --all-packages python packages/direct-cms/benchmarks/bench_sampling.py [--num 256]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from diffusers import DDIMScheduler  # noqa: E402

from direct_cms.evaluation import student_sample, teacher_sample  # noqa: E402
from direct_cms.grid import TimeGrid  # noqa: E402
from direct_cms.guidance import GuidedTeacher, UNetEps  # noqa: E402
from direct_cms.networks import build_digits_unet  # noqa: E402
from direct_cms.scheduler import DirectCMScheduler  # noqa: E402
from direct_cms.solvers import DDIMSolver  # noqa: E402
from direct_cms.teacher import make_teacher_scheduler  # noqa: E402


def _time(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--num", type=int, default=256)
    parser.add_argument("--num-intervals", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=3.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    unet = build_digits_unet(10, 16).eval()
    ddpm = make_teacher_scheduler()
    n = args.num_intervals
    grid = TimeGrid.from_scheduler(ddpm, n)
    guided = GuidedTeacher(UNetEps(unet), args.guidance, torch.tensor(10))
    gen = torch.Generator().manual_seed(0)
    x_T = torch.randn(args.num, 1, 8, 8, generator=gen)
    labels = torch.arange(args.num) % 10
    renoise = torch.randn(7, args.num, 1, 8, 8, generator=gen)
    ours, ours_s = _time(lambda: teacher_sample(guided, DDIMSolver(grid), x_T, labels))

    def diffusers_loop():
        sched = DDIMScheduler.from_config(ddpm.config, set_alpha_to_one=True, clip_sample=False)
        sched.set_timesteps(n)
        x = x_T.clone()
        with torch.inference_mode():
            for t in range(1000, 0, -1000 // n):  # the paper's 1-indexed grid: network gets t, schedule index t-1
                eps = guided(x, torch.full((args.num,), t), labels)
                x = sched.step(eps, t - 1, x, eta=0.0).prev_sample
        return x

    peer, peer_s = _time(diffusers_loop)
    print(
        json.dumps(
            {
                "case": "ddim_solve_vs_diffusers",
                "num": args.num,
                "N": n,
                "ours_s": ours_s,
                "peer_s": peer_s,
                "ratio": ours_s / peer_s,
                "max_abs_diff": float((ours - peer).abs().max()),
                "threads": torch.get_num_threads(),
            }
        )
    )
    nfe_teacher = n * (2 if args.guidance not in (0.0, 1.0) else 1)
    sched = DirectCMScheduler.from_teacher_config(ddpm.config, n)
    for k in (1, 2, 4, 8):
        _, student_s = _time(lambda k=k: student_sample(UNetEps(unet), sched, x_T, labels, k, renoise))
        print(
            json.dumps(
                {
                    "case": f"student_K{k}_vs_teacher_N{n}",
                    "num": args.num,
                    "student_nfe": k,
                    "teacher_nfe": nfe_teacher,
                    "ours_s": student_s,
                    "peer_s": ours_s,
                    "ratio": student_s / ours_s,
                    "nfe_ratio": k / nfe_teacher,
                    "threads": torch.get_num_threads(),
                }
            )
        )


if __name__ == "__main__":
    main()
