"""GPU check of fusemix (issue 12): FuseMix training on random latents, and CPU-vs-device agreement of one step.

``run(device, tiny)`` returns a JSON-able dict:

- ``agreement``: one FuseMix step (mixup with a seeded lambda and partner, both adapters, symmetric InfoNCE,
  backward) computed in float32 on the CPU and on ``device`` from the same weights and latents (TF32 off): the max
  abs differences of the loss and of every gradient, and ``passed`` (loss within 1e-4 relative, gradients within
  1e-4 absolute).
- ``train``: :func:`fusemix.train.train` on random cached latents on ``device`` (the whole training path: shuffled
  gathers, FuseMix, AdamW, schedule, validation-free checkpointing): steps/s, pairs/s (``2B`` pairs loaded per
  step), and ``peak_memory_mib`` (``torch.cuda.max_memory_allocated``; ``None`` off CUDA).

Training runs in float32 (the paper's adapters are small; no autocast in :mod:`fusemix.train`). Timings are
bracketed by ``torch.cuda.synchronize``. Nothing is downloaded: latents and weights are random. With
``tiny=True`` on CPU it takes a few seconds; the full size (paper adapters: L=4, x4, D=512 on 1536-/1024-d
latents, contrastive batch 8192) is sized for one H200 in well under 90 s.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import torch


def _latents(n_items: int, d_item: int, d_text: int, seed: int = 0):
    from fusemix.encoders import resolve_encoder
    from fusemix.latents import PairedLatents

    g = torch.Generator().manual_seed(seed)
    return PairedLatents(
        items=torch.randn(n_items, d_item, generator=g), texts=torch.randn(5 * n_items, d_text, generator=g),
        txt2item=torch.arange(5 * n_items) // 5, item_ids=[str(i) for i in range(n_items)],
        item_paths=[""] * n_items, captions=[""] * (5 * n_items),
        item_spec=resolve_encoder("frozen-conv", "image"), text_spec=resolve_encoder("frozen-bow", "text"),
    )  # fmt: skip


def _one_step(device: torch.device, state: dict, x: torch.Tensor, y: torch.Tensor, settings: dict):
    from fusemix.adapters import AdapterConfig, FusionModel
    from fusemix.loss import symmetric_infonce
    from fusemix.mixup import fusemix

    model = FusionModel(AdapterConfig(x.shape[1], **settings), AdapterConfig(y.shape[1], **settings))
    model.load_state_dict(state)
    model.to(device).eval()  # dropout off: the same function on both devices
    mixed = fusemix(x.to(device), y.to(device), 1.0, torch.Generator().manual_seed(7))
    out_x, out_y, tau = model(mixed.x, mixed.y)
    loss = symmetric_infonce(out_x, out_y, tau)
    loss.backward()
    grads = {name: p.grad.detach().double().cpu() for name, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach().double().cpu()), grads


def run(device: str, tiny: bool) -> dict[str, Any]:
    """Run the check on ``device`` (``cpu``, ``cuda``, ``cuda:N``); ``tiny`` shrinks every size."""
    from fusemix.adapters import AdapterConfig, FusionModel
    from fusemix.train import TrainConfig, train

    torch_device = torch.device(device)
    cuda = torch_device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    d_item, d_text = (64, 48) if tiny else (1536, 1024)
    batch = 32 if tiny else 8192
    settings = {"depth": 1, "expansion": 2, "dropout": 0.0, "out_dim": 32} if tiny else {
        "depth": 4, "expansion": 4, "dropout": 0.6, "out_dim": 512}  # fmt: skip

    # 1. one step on both devices from the same weights and latents
    torch.manual_seed(0)
    reference = FusionModel(AdapterConfig(d_item, **settings), AdapterConfig(d_text, **settings))
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    n_agree = 64 if tiny else 1024
    x, y = torch.randn(n_agree, d_item, generator=g), torch.randn(n_agree, d_text, generator=g)
    cpu_loss, cpu_grads = _one_step(torch.device("cpu"), state, x, y, settings)
    dev_loss, dev_grads = _one_step(torch_device, state, x, y, settings)
    grad_diff = max(float((cpu_grads[k] - dev_grads[k]).abs().max()) for k in cpu_grads)
    loss_diff = abs(cpu_loss - dev_loss)
    agreement = {
        "loss_cpu": cpu_loss, "loss_device": dev_loss, "max_abs_diff_loss": loss_diff,
        "max_abs_diff_grad": grad_diff, "passed": loss_diff <= 1e-4 * max(1.0, abs(cpu_loss)) and grad_diff <= 1e-4,
    }  # fmt: skip

    # 2. the training path on random cached latents
    n_items = 512 if tiny else 40_000
    steps = 10 if tiny else 60
    data = _latents(n_items, d_item, d_text)
    config = TrainConfig(
        cache_dir="", dataset="gpu-check", val_split=None, preset="cpu", batch_size=batch, steps=steps,
        warmup_steps=2, device=device, **settings,
    )  # fmt: skip
    if cuda:
        torch.cuda.synchronize(torch_device)
        torch.cuda.reset_peak_memory_stats(torch_device)
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = train(config, out, data=(data, None), show_progress=False)
        if cuda:
            torch.cuda.synchronize(torch_device)
        wall = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(torch_device) / 2**20 if cuda else None
    return {
        "package": "fusemix", "device": str(torch_device), "tiny": tiny,
        "agreement": agreement, "passed": agreement["passed"],
        "train": {
            "d_item": d_item, "d_text": d_text, "contrastive_batch": batch, "steps": steps,
            "steps_per_s": result.steps_per_second, "pairs_per_s": result.steps_per_second * 2 * batch,
            "seconds_total": wall,
        },
        "throughputs": {"train_pairs_per_s": result.steps_per_second * 2 * batch},
        "peak_memory_mib": peak,
    }  # fmt: skip


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "cpu", tiny="--full" not in sys.argv), indent=2))
