"""Counted compute of one distillation update at the paper's SDXL setting, for both objectives (no GPU needed).

The per-update cost on a GPU is what ``bench_sdxl.py --device cuda`` measures; where no GPU is at hand this script
gives the exact work that measurement will divide by: floating-point operations of SDXL's full UNet (2.6 B
parameters, built on the ``meta`` device, so nothing is allocated or downloaded) counted with
``torch.utils.flop_counter.FlopCounterMode``, times the number of UNet samples each objective pushes through per
update. Those counts come from running the package's own ``cd_target`` / ``direct_target`` / ``student_output`` on
a tiny SDXL-shaped UNet with the same batch, grid and guidance (a forward hook counts samples per call, with and
without gradient), so the masked direct solve's real early stopping is included.

Printed: TFLOP per update for ``cd`` and ``direct`` and, for a few sustained throughputs, the implied seconds per
update. Those seconds are a projection (the sustained fraction of peak is an assumption), not a measurement.

Usage: uv run --no-sync python packages/direct-cms/benchmarks/flops_sdxl.py [--batch 16] [--n 100] [--updates 20]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


def _gpu_check():
    spec = importlib.util.spec_from_file_location("direct_cms_gpu_check", Path(__file__).with_name("gpu_check.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unet_flops(config: dict, side: int) -> dict[str, float]:
    """FLOPs of one sample through the paper's LoRA student built from ``config`` on the meta device.

    Returns ``teacher_forward`` (adapters off, no grad), ``student_forward`` (adapters on, no grad) and
    ``student_train`` (forward + backward with gradient checkpointing, gradients for the LoRA weights only), each in
    FLOP for a batch of one ``side × side`` latent.
    """
    from diffusers import UNet2DConditionModel

    from direct_cms.lora import LORA_PRESETS
    from direct_cms.students import StudentTeacher

    preset = LORA_PRESETS["paper"]
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config).requires_grad_(False)
        models = StudentTeacher(unet, "lora", preset["rank"], preset["alpha"], preset["targets"])
        pooled = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
        x = torch.randn(1, 4, side, side)
        t = torch.full((1,), 500.0)
        from direct_cms.conditioning import TextCond

        cond = TextCond(torch.randn(1, 77, config["cross_attention_dim"]), torch.randn(1, pooled), torch.randn(1, 6))

    def count(fn) -> float:
        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        return float(counter.get_total_flops())

    def forward():  # the network itself: the ε-model wrappers ask autocast about the device, which meta has not
        return models.network(x, t, **cond.unet_kwargs(None)).sample

    out: dict[str, float] = {}
    with torch.no_grad():
        with models.adapters_disabled():
            out["teacher_forward"] = count(forward)
        out["student_forward"] = count(forward)
    models.network.train()
    models.network.enable_gradient_checkpointing()
    out["student_train"] = count(lambda: forward().float().square().mean().backward())
    return out


def samples_per_update(objective: str, batch: int, n: int, updates: int, guidance: float = 9.0) -> dict[str, float]:
    """Mean UNet samples per update through the package's own step functions on a tiny SDXL-shaped UNet.

    Returns ``teacher`` (adapters off; CFG counts both branches), ``student_no_grad`` (CD's target network) and
    ``student_grad`` samples.
    """
    from diffusers import EulerDiscreteScheduler

    from direct_cms.grid import TimeGrid
    from direct_cms.guidance import GuidedTeacher
    from direct_cms.lora import LORA_PRESETS
    from direct_cms.objectives import cd_target, direct_target, student_output
    from direct_cms.solvers import DDIMSolver
    from direct_cms.students import StudentTeacher

    check = _gpu_check()
    config = check.TINY_UNET
    unet = check._unet(config, "cpu", seed=0)
    preset = LORA_PRESETS["paper"]
    models = StudentTeacher(unet, "lora", preset["rank"], preset["alpha"], preset["targets"])
    counts = {"teacher": 0, "student_no_grad": 0, "student_grad": 0}
    lora_layer = next(m for m in models.network.modules() if hasattr(m, "disable_adapters") and hasattr(m, "r"))

    def hook(module, args, kwargs, output):
        if lora_layer.disable_adapters:
            counts["teacher"] += args[0].shape[0]
        else:
            counts["student_grad" if torch.is_grad_enabled() else "student_no_grad"] += args[0].shape[0]

    handle = models.network.register_forward_hook(hook, with_kwargs=True)
    grid = TimeGrid.from_scheduler(
        EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"), n
    )
    solver = DDIMSolver(grid)
    gen = torch.Generator().manual_seed(0)
    cond = check._cond(config, batch, "cpu", gen)
    guided = GuidedTeacher(models.teacher_eps, guidance, check._null(cond))
    side = config["sample_size"]
    for _ in range(updates):
        x_t = torch.randn(batch, 4, side, side, generator=gen)
        t = grid.time_of_index(torch.randint(0, n, (batch,), generator=gen))
        if objective == "cd":
            cd_target(guided, solver, models.student_eps, x_t, t, cond)
        else:
            direct_target(guided, solver, x_t, t, cond)
        student_output(models, grid, x_t, t, cond).square().mean().backward()
    handle.remove()
    return {key: value / updates for key, value in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="samples per update (the paper: 16)")
    parser.add_argument("--n", type=int, default=100, help="teacher grid size N (the paper: 100)")
    parser.add_argument("--updates", type=int, default=10, help="updates averaged when counting samples")
    parser.add_argument("--side", type=int, default=128, help="latent side (128 = 1024 px)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    per_sample = unet_flops(_gpu_check().SDXL_UNET, args.side)
    result: dict[str, object] = {
        "setting": {"batch": args.batch, "n": args.n, "latent_side": args.side, "guidance": 9.0, "lora": "paper"},
        "tflop_per_sample": {key: value / 1e12 for key, value in per_sample.items()},
    }
    for objective in ("cd", "direct"):
        samples = samples_per_update(objective, args.batch, args.n, args.updates)
        tflop = (
            samples["teacher"] * per_sample["teacher_forward"]
            + samples["student_no_grad"] * per_sample["student_forward"]
            + samples["student_grad"] * per_sample["student_train"]
        )
        result[objective] = {
            "unet_samples_per_update": samples,
            "tflop_per_update": tflop / 1e12,
            "projected_s_per_update": {f"{tf}_tflops": tflop / (tf * 1e12) for tf in (200, 400, 600)},
        }
    result["ratio_direct_over_cd"] = result["direct"]["tflop_per_update"] / result["cd"]["tflop_per_update"]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
