"""GPU check of eb-ensembles (issue 12): vectorised ensemble training on a device, and one step against the CPU.

``run(device, tiny)`` trains M MLP members vectorised on random data (no network, no files) and reports
members·steps/s and peak memory; it then runs one vectorised training epoch of one step (full batch) on the CPU and
on ``device`` in float32 from the same initialisation and compares the updated parameters (max abs diff; the
tolerance allows float32 round-off of the batched matmuls, which sum in a different order on another device).
The lead's ``tools/gpu_check.py`` imports this file by path.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from eb_ensembles.models import mlp_factory
from eb_ensembles.training.config import TrainConfig
from eb_ensembles.training.train import train_ensemble

TOLERANCE = 1e-4


def _data(n: int, d: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    return x, y


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(device: str, tiny: bool) -> dict[str, Any]:
    """Throughput and CPU agreement of vectorised training on ``device``; see the module docstring."""
    dev = torch.device(device)
    members, n, d, k, hidden, epochs, batch = (
        (4, 256, 16, 4, (32,), 2, 64) if tiny else (64, 20000, 64, 10, (256, 256), 3, 256)
    )
    x, y = _data(n, d, k)
    factory = mlp_factory(d, k, hidden)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    # warm-up (kernels, allocator), outside the timing
    warm = TrainConfig(members=2, epochs=1, batch_size=batch)
    train_ensemble(factory, x.to(dev), y.to(dev), warm, device=dev)
    train_ensemble(factory, x.to(dev), y.to(dev), warm, device=dev, generic=True)
    _sync(dev)
    config = TrainConfig(members=members, epochs=epochs, batch_size=batch, lr=1e-3, seed=1)
    start = time.perf_counter()
    train_ensemble(factory, x.to(dev), y.to(dev), config, device=dev)
    _sync(dev)
    seconds = time.perf_counter() - start
    steps = epochs * -(-n // batch)
    generic_start = time.perf_counter()
    train_ensemble(factory, x.to(dev), y.to(dev), config, device=dev, generic=True)
    _sync(dev)
    generic_seconds = time.perf_counter() - generic_start

    one_step = TrainConfig(members=members, epochs=1, batch_size=n, lr=1e-2, seed=2)
    on_cpu = train_ensemble(factory, x, y, one_step, device="cpu")
    on_dev = train_ensemble(factory, x.to(dev), y.to(dev), one_step, device=dev)
    diff = max(
        float((a[name] - b[name].cpu()).abs().max())
        for a, b in zip(on_cpu.states, on_dev.states, strict=True)
        for name in a
    )
    return {
        "device": str(dev),
        "tiny": tiny,
        "members": members,
        "steps": steps,
        "member_steps_per_s_mlp_fast_path": members * steps / seconds,
        "member_steps_per_s_generic_vmap": members * steps / generic_seconds,
        "one_step_max_abs_param_diff_vs_cpu": diff,
        "tolerance": TOLERANCE,
        "pass": diff <= TOLERANCE,
        "peak_memory_mib": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "cpu", tiny="--full" not in sys.argv), indent=2))
