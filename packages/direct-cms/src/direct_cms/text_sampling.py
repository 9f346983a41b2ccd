"""Sampling a distilled text-to-image student through a diffusers pipeline.

:func:`student_pipeline` rebuilds the run's teacher pipeline (same id/path, VAE, variant, revision), swaps in
:class:`~direct_cms.scheduler.DirectCMScheduler` (ᾱ from the teacher's scheduler config, the run's N) and loads the
student's LoRA with ``pipe.load_lora_weights``. Sampling uses no CFG on the student side (``guidance_scale=0``, as
the paper): with the same generator this equals the package's own sampler
(:func:`~direct_cms.evaluation.student_sample`) fed ``x_T`` and the re-noising draws in the pipeline's order.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from direct_cms.lora import load_lora_into
from direct_cms.scheduler import DirectCMScheduler
from sixlab_shared import UserError, load_checkpoint

logger = logging.getLogger(__name__)

__all__ = ["export_pipeline", "run_config", "sample_prompts", "student_pipeline", "teacher_for_run"]


def run_config(run_dir: str | Path) -> Any:
    """The :class:`~direct_cms.distill.DistillConfig` of a finished ``distill`` run.

    Raises:
        UserError: the folder holds no finished run.
    """
    from direct_cms.distill import STUDENT_FILE, DistillConfig

    path = Path(run_dir) / STUDENT_FILE
    if not path.is_file():
        raise UserError(f"{str(run_dir)!r} holds no {STUDENT_FILE}; pass the --out folder of a finished `distill` run")
    return DistillConfig(**load_checkpoint(path)["config"])


def teacher_for_run(config: Any, torch_dtype: torch.dtype | None = None) -> Any:
    """Load the run's SD/SDXL teacher (refusing built-in teachers, which have no pipeline)."""
    from direct_cms.text_teacher import is_pipeline_source, load_text_teacher

    if not is_pipeline_source(config.teacher, config.revision or None):
        raise UserError(f"teacher {config.teacher!r} of this run is not an SD 1.5 / SDXL pipeline")
    return load_text_teacher(
        config.teacher,
        vae=config.vae or None,
        variant=config.variant or None,
        revision=config.revision or None,
        torch_dtype=torch_dtype,
    )


def student_pipeline(
    run_dir: str | Path, device: str | torch.device = "cpu", torch_dtype: torch.dtype | None = None
) -> tuple[Any, Any]:
    """The teacher pipeline with ``DirectCMScheduler`` and the run's LoRA loaded.

    Returns:
        ``(pipe, config)``.

    Raises:
        UserError: not a finished SD/SDXL LoRA run, or the teacher cannot be loaded.
    """
    from direct_cms.distill import LORA_DIR

    config = run_config(run_dir)
    if config.student != "lora":
        raise UserError("pipeline sampling needs a LoRA student (--student lora)")
    teacher = teacher_for_run(config, torch_dtype)
    pipe = teacher.pipe
    pipe.scheduler = DirectCMScheduler.from_teacher_config(teacher.scheduler.config, config.num_intervals)
    load_lora_into(pipe, Path(run_dir) / LORA_DIR)
    return pipe.to(device), config


def sample_prompts(
    pipe: Any,
    prompts: list[str],
    num_steps: int,
    seed: int,
    *,
    height: int | None = None,
    width: int | None = None,
    output_type: str = "pil",
) -> Any:
    """K-step samples, one per prompt, with a ``torch.Generator`` seeded by ``seed`` (student without CFG).

    Returns:
        The pipeline's images (``output_type``: ``pil`` images or ``latent`` tensors ``(B, C, h, w)``).

    Raises:
        UserError: K outside 1..N.
    """
    scheduler = pipe.scheduler
    n = scheduler.config.num_original_inference_steps
    if not 1 <= num_steps <= n:
        raise UserError(f"--steps K={num_steps} must lie in 1..N={n} (the distillation grid)")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return pipe(
        prompt=list(prompts),
        num_inference_steps=num_steps,
        guidance_scale=0.0,
        height=height,
        width=width,
        generator=generator,
        output_type=output_type,
    ).images


def export_pipeline(run_dir: str | Path, out: str | Path) -> Path:
    """Save the student as a standalone diffusers pipeline: the LoRA fused into the UNet with diffusers'
    ``fuse_lora`` and then unloaded (so the saved UNet holds plain weights, never peft-injected keys), with
    ``DirectCMScheduler`` as its scheduler. ``DiffusionPipeline.from_pretrained(out)`` then samples in K steps
    (``guidance_scale=0``) without direct-cms code other than the scheduler class.

    Raises:
        UserError: as :func:`student_pipeline`; ``out`` already holds a pipeline.
    """
    out = Path(out)
    if (out / "model_index.json").is_file():
        raise UserError(f"{str(out)!r} already holds a pipeline; choose another folder")
    pipe, _ = student_pipeline(run_dir)
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    pipe.save_pretrained(out)
    return out
