"""Distillation updates/s (cd and direct) and sampling images/s on a full-size SDXL UNet with random weights.

CUDA: SDXL's UNet config (2.6 B parameters), fp16/bf16 weights with fp32 LoRA (the paper's preset), autocast,
gradient checkpointing, 128×128 latents, batch 2, N = 10; prints peak GPU memory. CPU: the tiny SDXL-shaped UNet
(the full one would take minutes per update), one thread. One JSON line; the figures come from the same code as
``gpu_check.py``. Absolute CPU times on a shared machine are noise; compare cd with direct within one run.

Usage: uv run --no-sync python packages/direct-cms/benchmarks/bench_sdxl.py [--device cuda] [--tiny]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny UNet (always on the CPU)")
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("direct_cms_gpu_check", Path(__file__).with_name("gpu_check.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.run(args.device, tiny=args.tiny or args.device == "cpu")
    result["ratio_cd_over_direct_updates_per_s"] = result["cd_updates_per_s"] / result["direct_updates_per_s"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
