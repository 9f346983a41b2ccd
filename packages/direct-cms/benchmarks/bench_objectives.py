"""Updates/s of the two objectives (cd vs direct) on the digits UNet teacher, side by side in one process.

Prints one JSON line per objective plus a ratio line. CPU, small size; threads set to 1 (printed).
Usage: uv run --all-packages python packages/direct-cms/benchmarks/bench_objectives.py [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from direct_cms.distill import DistillConfig, distill  # noqa: E402
from direct_cms.teacher import TeacherConfig, save_teacher, train_teacher  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-intervals", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        teacher, _ = train_teacher(TeacherConfig(steps=2, device="cpu"))
        save_teacher(teacher, f"{tmp}/teacher")
        results = {}
        for objective in ("cd", "direct"):
            cfg = DistillConfig(
                teacher=f"{tmp}/teacher",
                objective=objective,
                steps=args.steps,
                batch_size=args.batch_size,
                num_intervals=args.num_intervals,
                tensorboard=False,
                device="cpu",
                checkpoint_every=10**6,
            )
            start = time.perf_counter()
            summary = distill(cfg, f"{tmp}/{objective}")
            results[objective] = summary
            print(
                json.dumps(
                    {
                        "case": f"distill_{objective}",
                        "batch_size": args.batch_size,
                        "N": args.num_intervals,
                        "steps": args.steps,
                        "updates_per_s": summary["updates_per_s"],
                        "teacher_calls_per_update": summary["teacher_calls_per_update"],
                        "wall_s": time.perf_counter() - start,
                        "threads": torch.get_num_threads(),
                    }
                )
            )
        print(
            json.dumps(
                {
                    "case": "direct_vs_cd",
                    "ours_s": 1 / results["direct"]["updates_per_s"],
                    "peer_s": 1 / results["cd"]["updates_per_s"],
                    "ratio": results["cd"]["updates_per_s"] / results["direct"]["updates_per_s"],
                    "note": "seconds per update, direct (ours) vs cd (peer objective)",
                    "threads": torch.get_num_threads(),
                }
            )
        )


if __name__ == "__main__":
    main()
