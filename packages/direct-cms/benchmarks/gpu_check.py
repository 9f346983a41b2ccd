"""direct-cms's GPU check: distillation updates with autocast on a full-size SDXL UNet (random weights, gradient
checkpointing, the paper's LoRA), both objectives, and K-step sampling; plus CPU-vs-device agreement of one teacher
solver step and one masked direct solve in float32.

``run(device, tiny)`` is imported by the repository's ``tools/gpu_check.py``; ``benchmarks/bench_sdxl.py`` prints
the same figures as a benchmark. Nothing is downloaded: the UNet is built from SDXL's config with random weights and
the text conditioning is random (prompt embeddings ``(B, 77, 2048)``, pooled ``(B, 1280)``, SDXL time ids).

- ``tiny=False``: SDXL's UNet (2.6 B parameters) in fp16 weights with fp32 LoRA (rank 64, 14 target groups),
  autocast (bf16 where supported, else fp16), gradient checkpointing, 128×128 latents (1024 px), batch 2, N = 10
  (the direct target then needs at most 10 guided teacher steps; the paper's N = 100 costs ~10× more per update).
- ``tiny=True``: an SDXL-shaped UNet with 32/64 channels, 8×8 latents, float32 on the CPU (< 20 s).
- Agreement: a small SDXL-shaped UNet in float32 on the CPU and on ``device`` (TF32 off): one guided DDIM step and
  one masked direct solve must agree to 1e-4 (absolute, on unit-scale latents).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

SDXL_UNET = dict(
    sample_size=128,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)
TINY_UNET = dict(
    sample_size=8,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(32, 64),
    layers_per_block=1,
    cross_attention_dim=64,
    attention_head_dim=(2, 4),
    norm_num_groups=8,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=32 + 6 * 8,
)


def _unet(config: dict[str, Any], device: str, seed: int) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    with torch.device(device):  # initialise where it runs (SDXL's 2.6 B parameters are slow to build on a CPU)
        return UNet2DConditionModel(**config).eval().requires_grad_(False)


def _cond(config: dict[str, Any], batch: int, device: str, gen: torch.Generator):
    from direct_cms.conditioning import TextCond

    pooled = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
    side = config["sample_size"] * 8
    return TextCond(
        torch.randn(batch, 77, config["cross_attention_dim"], generator=gen).to(device),
        torch.randn(batch, pooled, generator=gen).to(device),
        torch.tensor([[side, side, 0, 0, side, side]], dtype=torch.float32).expand(batch, 6).to(device),
    )


def _null(cond):
    from direct_cms.conditioning import TextCond

    return TextCond(torch.zeros_like(cond.prompt_embeds[:1]), torch.zeros_like(cond.pooled[:1]), cond.time_ids[:1])


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _distill_rate(unet, config, device, objective, batch, n, steps, autocast_dtype) -> dict[str, float]:
    """Updates/s of ``steps`` distillation updates (after one warm-up), the package's own step functions."""
    from diffusers import EulerDiscreteScheduler

    from direct_cms.guidance import GuidedTeacher
    from direct_cms.lora import LORA_PRESETS
    from direct_cms.objectives import cd_target, direct_target, l2_loss, student_output
    from direct_cms.solvers import DDIMSolver
    from direct_cms.students import StudentTeacher

    preset = LORA_PRESETS["paper"]
    torch.manual_seed(0)
    models = StudentTeacher(unet, "lora", preset["rank"], preset["alpha"], preset["targets"])
    if autocast_dtype is not None:
        models.network.to(autocast_dtype)
        for p in models.trainable_parameters():
            p.data = p.data.float()
    models.network.enable_gradient_checkpointing()
    models.to(device)
    params = models.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    from direct_cms.grid import TimeGrid

    grid = TimeGrid.from_scheduler(scheduler, n)
    solver = DDIMSolver(grid)
    gen = torch.Generator().manual_seed(1)
    cond = _cond(config, batch, device, gen)
    guided = GuidedTeacher(models.teacher_eps, 9.0, _null(cond))
    side = config["sample_size"]
    autocast = torch.autocast(
        device_type=torch.device(device).type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
    )
    elapsed, calls, losses = 0.0, 0, []
    for step in range(steps + 1):
        x0 = torch.randn(batch, 4, side, side, generator=gen).to(device)
        noise = torch.randn(batch, 4, side, side, generator=gen).to(device)
        t = grid.time_of_index(torch.randint(0, n, (batch,), generator=gen)).to(device)
        x_t = grid.add_noise(x0, noise, t)
        _sync(device)
        start, before = time.perf_counter(), guided.network_calls
        with autocast:
            if objective == "cd":
                target = cd_target(guided, solver, models.student_eps, x_t, t, cond)
            else:
                target = direct_target(guided, solver, x_t, t, cond)
            loss = l2_loss(student_output(models, grid, x_t, t, cond).float(), target.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        if step > 0:  # the first update warms up kernels and the allocator
            elapsed += time.perf_counter() - start
            calls += guided.network_calls - before
            losses.append(loss.item())
    # remove the adapters so the next objective starts from the plain UNet
    from direct_cms.lora import without_lora

    without_lora(models.network, merge=False, inplace=True)
    return {
        "updates_per_s": steps / elapsed,
        "teacher_calls_per_update": calls / steps,
        "loss_finite": bool(all(torch.isfinite(torch.tensor(losses)))),
    }


def _sampling_rate(unet, config, device, batch, autocast_dtype, k: int = 4) -> float:
    """Images/s of K-step student sampling (DirectCMScheduler on the paper's grid) with the plain UNet."""
    from direct_cms.evaluation import student_sample
    from direct_cms.guidance import UNetEps
    from direct_cms.scheduler import DirectCMScheduler

    scheduler = DirectCMScheduler(num_original_inference_steps=100)
    gen = torch.Generator().manual_seed(2)
    side = config["sample_size"]
    cond = _cond(config, batch, device, gen)
    x_T = torch.randn(batch, 4, side, side, generator=gen).to(device)
    renoise = torch.randn(k - 1, batch, 4, side, side, generator=gen)
    eps = UNetEps(unet)
    autocast = torch.autocast(
        device_type=torch.device(device).type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
    )
    with autocast:
        student_sample(eps, scheduler, x_T, cond, k, renoise)  # warm-up
        _sync(device)
        start = time.perf_counter()
        student_sample(eps, scheduler, x_T, cond, k, renoise)
        _sync(device)
    return batch / (time.perf_counter() - start)


def _agreement(device: str) -> dict[str, Any]:
    """One guided DDIM step and one masked direct solve in float32 on the CPU and on ``device``."""
    from diffusers import EulerDiscreteScheduler

    from direct_cms.grid import TimeGrid
    from direct_cms.guidance import GuidedTeacher, UNetEps
    from direct_cms.solvers import DDIMSolver, solve

    unet_cpu = _unet(TINY_UNET, "cpu", seed=3)
    unet_dev = copy.deepcopy(unet_cpu).to(device)
    grid = TimeGrid.from_scheduler(
        EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"), 10
    )
    gen = torch.Generator().manual_seed(4)
    cond = _cond(TINY_UNET, 3, "cpu", gen)
    x = torch.randn(3, 4, 8, 8, generator=gen)
    t = torch.tensor([1000, 400, 100])
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        out = {}
        for name, unet, dev in (("cpu", unet_cpu, "cpu"), ("device", unet_dev, device)):
            guided = GuidedTeacher(UNetEps(unet), 9.0, _null(cond.to(dev)))
            with torch.no_grad():
                step = DDIMSolver(grid).step(guided, x.to(dev), t.to(dev), cond.to(dev))
                full = solve(DDIMSolver(grid), guided, x.to(dev), t.to(dev), cond.to(dev))
            out[name] = (step.cpu(), full.cpu())
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    step_diff = (out["cpu"][0] - out["device"][0]).abs().max().item()
    solve_diff = (out["cpu"][1] - out["device"][1]).abs().max().item()
    return {"solver_step_max_abs_diff": step_diff, "direct_solve_max_abs_diff": solve_diff}


def run(device: str = "cpu", tiny: bool = True) -> dict[str, Any]:
    """Run the check on ``device`` (``cpu``, ``cuda``, ``cuda:N``); see the module docstring.

    Returns:
        Sizes, ``cd_updates_per_s``, ``direct_updates_per_s``, teacher calls per update, ``sampling_images_per_s``
        (K = 4), ``peak_memory_mib`` (CUDA, else None), the CPU-vs-device differences and ``agrees``.
    """
    from sixlab_shared import autocast_dtype

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    config = TINY_UNET if tiny else SDXL_UNET
    dtype = autocast_dtype(device) if cuda else None  # fp32 on the CPU
    batch, n, steps = (2, 10, 2) if not tiny else (2, 10, 1)
    unet = _unet(config, device, seed=0)
    result: dict[str, Any] = {
        "device": device,
        "tiny": tiny,
        "unet_parameters": sum(p.numel() for p in unet.parameters()),
        "latent_size": config["sample_size"],
        "batch_size": batch,
        "num_intervals": n,
        "autocast_dtype": str(dtype).replace("torch.", "") if dtype else "float32",
        "gradient_checkpointing": True,
    }
    for objective in ("cd", "direct"):
        rates = _distill_rate(unet, config, device, objective, batch, n, steps, dtype)
        result.update({f"{objective}_{k}": v for k, v in rates.items()})
    result["sampling_images_per_s"] = _sampling_rate(unet, config, device, batch, dtype)
    result["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    del unet
    result.update(_agreement(device))
    tolerance = 1e-4
    result["agrees"] = bool(
        result["solver_step_max_abs_diff"] < tolerance
        and result["direct_solve_max_abs_diff"] < tolerance
        and result["cd_loss_finite"]
        and result["direct_loss_finite"]
    )
    return result


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.device, args.tiny)))
