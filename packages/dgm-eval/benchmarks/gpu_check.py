"""GPU check of dgm-eval (issue 12): feature extraction in bf16 on the device, prdc and FD on the device vs CPU.

``run(device, tiny)`` uses random weights and procedural images only (no network, no files):

- encoders: a DINOv2 ViT in the torch.hub layout (tiny: 2 blocks of width 64; full: ViT-L/14 sizes, 24 blocks of
  1024) and the TF-FID Inception-V3 graph, both with random weights. On CUDA the device runs autocast bf16 (what
  ``--precision bf16`` does); its features are compared with the CPU's float32 features of the same images
  (relative Frobenius error; bf16 keeps ~3 significant digits, so the bound is 5e-2) and the device's float32
  features too (TF32 convolutions/matmuls on Ampere+ allow ~1e-2). Throughput: images/s of the encoder forward on
  preprocessed batches, and of ``extract_features`` end to end (PIL decode/resize on the CPU included).
- metrics: prdc (low-precision distance blocks: float32 with TF32 off on CUDA, bfloat16 on a CPU with native bf16;
  every decision the rounding could flip re-decided in float64) and FD (float64; dense path and the N <= D Gram
  path) on the device against the CPU path: prdc values must be identical, FD equal to 1e-8 relative.

Returns a dict with the differences, ``agrees`` (all bounds met), throughputs and ``peak_memory_mib``
(``torch.cuda.max_memory_allocated`` on CUDA, else None). The lead's ``tools/gpu_check.py`` imports this file by path.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from PIL import Image

from dgm_eval.encoders.dinov2 import DINOv2Encoder, model_from_hub_state
from dgm_eval.encoders.inception import InceptionEncoder
from dgm_eval.extraction import extract_features
from dgm_eval.metrics import frechet_distance, prdc

BF16_BOUND = 5e-2
FP32_BOUND = 1e-2
FD_BOUND = 1e-8


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _images(n: int, size: int = 64) -> list[np.ndarray]:
    """Procedural RGB uint8 images: gradients, rings and seeded noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for i in range(n):
        f = 2 + i % 7
        base = np.stack([np.sin(f * xx * 6.28), np.cos(f * yy * 6.28), np.sin(f * (xx**2 + yy**2) * 12)], axis=2)
        img = 127.5 * (1 + base) + rng.normal(0, 20, size=(size, size, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def _hub_state(dim: int, depth: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random DINOv2 weights in the torch.hub layout (37x37 position grid, 64-d heads, MLP ratio 4)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 0.02) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    state = {
        "cls_token": rnd(1, 1, dim, scale=0.5),
        "pos_embed": rnd(1, 1 + 37 * 37, dim, scale=0.5),
        "patch_embed.proj.weight": rnd(dim, 3, 14, 14),
        "patch_embed.proj.bias": rnd(dim),
        "norm.weight": 1 + rnd(dim, scale=0.1),
        "norm.bias": rnd(dim),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        for name, shape in (
            ("norm1.weight", (dim,)), ("norm1.bias", (dim,)), ("attn.qkv.weight", (3 * dim, dim)),
            ("attn.qkv.bias", (3 * dim,)), ("attn.proj.weight", (dim, dim)), ("attn.proj.bias", (dim,)),
            ("ls1.gamma", (dim,)), ("norm2.weight", (dim,)), ("norm2.bias", (dim,)),
            ("mlp.fc1.weight", (4 * dim, dim)), ("mlp.fc1.bias", (4 * dim,)), ("mlp.fc2.weight", (dim, 4 * dim)),
            ("mlp.fc2.bias", (dim,)), ("ls2.gamma", (dim,)),
        ):  # fmt: skip
            state[b + name] = (
                (1 + rnd(*shape, scale=0.1)) if name.startswith("norm") and "weight" in name else rnd(*shape)
            )
    return state


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def _encoder_check(name: str, encoder: Any, images: list[np.ndarray], dev: torch.device, tiny: bool) -> dict:
    n_cmp = 2 if tiny else 32
    cpu = extract_features(images[:n_cmp], encoder, batch_size=n_cmp, device="cpu", progress=False)
    prec = "bf16" if dev.type == "cuda" else "fp32"
    if dev.type == "cpu":  # the device is the CPU: nothing to compare (the tiny smoke run stays short)
        on_dev = dev32 = cpu
    else:
        on_dev = extract_features(images[:n_cmp], encoder, batch_size=n_cmp, device=dev, precision=prec, progress=False)
        dev32 = extract_features(
            images[:n_cmp], encoder, batch_size=n_cmp, device=dev, precision="fp32", progress=False
        )
    record: dict[str, Any] = {
        "precision": prec,
        "rel_err_vs_cpu_fp32": _rel(on_dev, cpu),
        "rel_err_fp32_vs_cpu_fp32": _rel(dev32, cpu),
    }
    record["agrees"] = record["rel_err_vs_cpu_fp32"] < (BF16_BOUND if prec == "bf16" else FP32_BOUND) and (
        record["rel_err_fp32_vs_cpu_fp32"] < FP32_BOUND
    )
    # forward throughput on preprocessed batches (the device's own speed)
    batch = torch.stack([encoder.transform(Image.fromarray(im)) for im in images[:8]])
    reps = 1 if tiny else 16
    bs = 2 if tiny else 256
    x = batch.repeat((bs + len(batch) - 1) // len(batch), 1, 1, 1)[:bs].to(dev)
    encoder.to(dev)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=prec == "bf16")
    with torch.no_grad(), autocast:
        encoder(x)  # warm-up
        _sync(dev)
        start = time.perf_counter()
        for _ in range(reps):
            encoder(x)
        _sync(dev)
    record["forward_images_per_s"] = round(bs * reps / (time.perf_counter() - start), 1)
    if not tiny:  # end to end, PIL decode/resize on the CPU included
        start = time.perf_counter()
        extract_features(images, encoder, batch_size=bs, device=dev, precision=prec, progress=False, num_workers=0)
        _sync(dev)
        record["extract_images_per_s"] = round(len(images) / (time.perf_counter() - start), 1)
    encoder.to("cpu")
    return record


def _metric_check(dev: torch.device, tiny: bool) -> dict:
    rng = np.random.default_rng(1)
    n, d = (400, 32) if tiny else (10000, 1024)
    real = rng.normal(size=(n, d)).astype(np.float32)
    fake = (rng.normal(size=(n, d)) * 1.05 + 0.05).astype(np.float32)
    out: dict[str, Any] = {"prdc_n": n, "prdc_d": d}
    start = time.perf_counter()
    cpu = prdc(real, fake, nearest_k=5, device="cpu")
    out["prdc_cpu_s"] = round(time.perf_counter() - start, 3)
    prdc(real[:200], fake[:200], nearest_k=5, device=dev)  # warm-up
    _sync(dev)
    start = time.perf_counter()
    on_dev = prdc(real, fake, nearest_k=5, device=dev)
    _sync(dev)
    out["prdc_device_s"] = round(time.perf_counter() - start, 3)
    out["prdc_max_abs_diff"] = max(abs(on_dev[k] - cpu[k]) for k in cpu)
    out["prdc_equal"] = on_dev == cpu
    prdc_ok = out["prdc_equal"]
    fd_diffs = {}
    for label, (nr, ng, dd) in {
        "dense": (n, n, 64 if tiny else 512),
        "gram": (60, 50, 128) if tiny else (300, 300, 3072),
    }.items():
        a = rng.normal(size=(nr, dd))
        b = rng.normal(size=(ng, dd)) * 1.1 + 0.1
        value_cpu = frechet_distance(a, b, device="cpu")
        start = time.perf_counter()
        value_dev = frechet_distance(torch.from_numpy(a).to(dev), torch.from_numpy(b).to(dev))
        _sync(dev)
        out[f"fd_{label}_device_s"] = round(time.perf_counter() - start, 4)
        fd_diffs[label] = abs(value_dev - value_cpu) / abs(value_cpu)
    out["fd_rel_diff"] = fd_diffs
    out["agrees"] = bool(prdc_ok and max(fd_diffs.values()) < FD_BOUND)
    return out


def run(device: str, tiny: bool) -> dict[str, Any]:
    """bf16 extraction and device metrics against the CPU path; see the module docstring."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    n_images = 2 if tiny else 512
    images = _images(n_images)
    dim, depth = (64, 2) if tiny else (1024, 24)
    dinov2 = DINOv2Encoder(model_from_hub_state(_hub_state(dim, depth)), arch="vitl14", weights_id="random")
    inception = InceptionEncoder()  # the TF-FID graph with random initial weights
    result: dict[str, Any] = {
        "dinov2": _encoder_check("dinov2", dinov2, images, dev, tiny),
        "inception": _encoder_check("inception", inception, images, dev, tiny),
        "metrics": _metric_check(dev, tiny),
    }
    result["agrees"] = all(part["agrees"] for part in result.values())
    result["throughput_images_per_s"] = {name: result[name]["forward_images_per_s"] for name in ("dinov2", "inception")}
    result["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1) if dev.type == "cuda" else None
    return result


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "cpu", tiny="--full" not in sys.argv), indent=1))
