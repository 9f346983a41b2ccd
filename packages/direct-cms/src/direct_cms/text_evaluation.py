"""Evaluation of text-to-image students as the paper measures them (reference §3).

- **Fixed noise**: the initial latents x_T and the multistep re-noising draws are generated once from the seed and
  stored (``eval_noise.safetensors``), so the teacher and every student start from the same x_T.
- **Teacher reference**: the teacher's own DDIM-N solve at the training guidance w from x_T, computed once and
  cached (``teacher_latents.safetensors``, keyed by teacher, VAE, N, solver, w, prompts and noise).
- **Latent MSE** (the paper's ODE error): element-wise MSE in scaled latent space between a student's K-step
  output and the reference, for K = 1, 2, 4, 8.
- **CLIP score**: cosine similarity of CLIP image and text embeddings (OpenAI ViT-L/14 by default), not ×100, via
  transformers' ``CLIPModel``.
- **FID / FD-DINOv2**: Fréchet distance in Inception / DINOv2 features through dgm-eval's Python API (the
  ``direct-cms[eval]`` extra; imported only when asked for). Students are compared with the teacher's samples; the
  teacher with real images when a folder is given.
- **Cost**: NFE (network evaluations per image) and wall time per model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from direct_cms.conditioning import sdxl_time_ids
from direct_cms.config import CLIP_MODEL
from direct_cms.evaluation import DEFAULT_KS, EvalNoise, student_sample, teacher_sample
from direct_cms.guidance import GuidedTeacher, UNetEps
from direct_cms.metrics import ode_error
from direct_cms.scheduler import DirectCMScheduler
from direct_cms.solvers import make_solver
from sixlab_shared import RunDir, UserError, load_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)

__all__ = ["CLIP_MODEL", "TextEvalConfig", "clip_score", "decode_latents", "evaluate_text", "frechet_distance_dgm"]

#: dgm-eval encoder → name of the metric in the table.
FD_NAMES = {"inception": "fid", "dinov2": "fd_dinov2"}
NOISE_FILE = "eval_noise.safetensors"
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
REFERENCE_FILE = "teacher_latents.safetensors"


@dataclass
class TextEvalConfig:
    """Settings of ``direct-cms evaluate --prompts`` (text-to-image students)."""

    ks: list[int] = field(default_factory=lambda: list(DEFAULT_KS))
    """Student step counts K."""
    seed: int = 0
    """Seeds the fixed initial noise (stored once, reused)."""
    clip_model: str = CLIP_MODEL
    """CLIP model id or folder for the CLIP score; empty skips it."""
    fd_encoders: list[str] = field(default_factory=list)
    """dgm-eval encoders for Fréchet distances (``inception`` → FID, ``dinov2`` → FD-DINOv2); needs the
    ``direct-cms[eval]`` extra."""
    real_images: str = ""
    """Folder of real images: reference set of the teacher's FD (students use the teacher's samples)."""
    batch_size: int = 8
    """Images per forward pass."""
    precision: str = "fp32"
    """Compute precision of sampling and decoding: ``fp32``, or autocast ``fp16``/``bf16`` (GPU)."""
    device: str | None = None
    """Where models run (default: CPU)."""


def _clip(model: str) -> tuple[Any, Any]:
    from transformers import CLIPModel, CLIPProcessor

    try:
        return CLIPModel.from_pretrained(model).eval(), CLIPProcessor.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise UserError(
            f"could not load the CLIP model {model!r} for the CLIP score: download it first or pass a local folder "
            "(--clip-model), or --clip-model '' to skip"
        ) from err


def _features(output: Any) -> torch.Tensor:
    # transformers 5 returns a model output with the projected embeddings in ``pooler_output``; 4.x a tensor
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@torch.no_grad()
def clip_score(
    images: list[Any],
    prompts: list[str],
    model: str | tuple[Any, Any] = CLIP_MODEL,
    batch_size: int = 16,
    device: str = "cpu",
) -> list[float]:
    """Per-image CLIP score: cos(image embedding, text embedding) of ``CLIPModel`` (not ×100, as the paper).

    Args:
        images: PIL images. prompts: one per image.
        model: CLIP id or folder (model and processor), or an already loaded ``(CLIPModel, CLIPProcessor)``.

    Returns:
        ``len(images)`` cosines in [−1, 1].

    Raises:
        UserError: the model cannot be loaded, or the counts differ.
    """
    if len(images) != len(prompts):
        raise UserError(f"clip_score needs one prompt per image, got {len(images)} images and {len(prompts)} prompts")
    clip, processor = _clip(model) if isinstance(model, str) else model
    clip = clip.to(device)
    scores: list[float] = []
    for start in range(0, len(images), batch_size):
        inputs = processor(
            text=prompts[start : start + batch_size],
            images=images[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            truncation=True,
        ).to(device)
        image = _features(clip.get_image_features(pixel_values=inputs["pixel_values"]))
        text = _features(clip.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]))
        cos = torch.nn.functional.cosine_similarity(image.double(), text.double(), dim=-1)
        scores.extend(cos.tolist())
    return scores


@torch.no_grad()
def decode_latents(vae: Any, latents: torch.Tensor, batch_size: int = 8) -> list[Any]:
    """Scaled latents ``(B, C, h, w)`` → PIL RGB images through ``vae.decode(latents / scaling_factor)``."""
    from PIL import Image

    images = []
    for start in range(0, latents.shape[0], batch_size):
        chunk = latents[start : start + batch_size].to(device=vae.device, dtype=vae.dtype)
        pixels = vae.decode(chunk / vae.config.scaling_factor).sample.float().clamp(-1, 1)
        array = ((pixels + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        images.extend(Image.fromarray(a) for a in array)
    return images


def frechet_distance_dgm(
    generated: list[Any], reference: list[Any], encoder: str, device: str = "cpu", batch_size: int = 16
) -> float:
    """Fréchet distance between two image sets in a dgm-eval encoder's features (dgm-eval's ``fd`` metric).

    Raises:
        UserError: dgm-eval is not installed (``pip install 'direct-cms[eval]'``), or the encoder is unknown or its
            weights are unavailable.
    """
    try:
        from dgm_eval.api import compute_metrics
        from dgm_eval.encoders import load_encoder
        from dgm_eval.extraction import extract_features
    except ImportError as err:
        raise UserError("Fréchet distances need dgm-eval: pip install 'direct-cms[eval]'") from err
    model = load_encoder(encoder, device=device)
    gen = extract_features(generated, model, batch_size=batch_size, device=device, progress=False)
    ref = extract_features(reference, model, batch_size=batch_size, device=device, progress=False)
    return float(compute_metrics(ref, gen, metrics=["fd"])["fd"])


def _read_prompts(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--prompts {str(path)!r} is not a file (one prompt per line)")
    try:
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as err:
        raise UserError(f"--prompts {str(path)!r} is not UTF-8 text (one prompt per line)") from err
    if len(prompts) < 2:
        raise UserError(f"--prompts {str(path)!r} needs at least 2 prompts, got {len(prompts)}")
    return prompts


def _real_images(folder: str, n: int) -> list[Any]:
    from PIL import Image

    from direct_cms.captions import IMAGE_SUFFIXES

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:n]
    if len(files) < 2:
        raise UserError(f"--real-images {folder!r} holds fewer than 2 images")
    images = []
    for file in files:
        with Image.open(file) as image:
            images.append(image.convert("RGB"))
    return images


class _Scorers:
    """CLIP and dgm-eval encoders loaded once per evaluation, with each reference set's features cached."""

    def __init__(self, config: TextEvalConfig) -> None:
        self.config = config
        self.device = config.device or "cpu"
        self.clip = _clip(config.clip_model) if config.clip_model else None
        self.encoders: dict[str, Any] = {}
        self.reference_features: dict[tuple[str, int], Any] = {}
        if config.fd_encoders:
            from dgm_eval.encoders import load_encoder

            self.encoders = {name: load_encoder(name, device=self.device) for name in config.fd_encoders}

    def _features(self, encoder: str, images: list[Any]) -> Any:
        from dgm_eval.extraction import extract_features

        model = self.encoders[encoder]
        return extract_features(images, model, batch_size=self.config.batch_size, device=self.device, progress=False)

    def __call__(self, images: list[Any], prompts: list[str], reference: list[Any] | None) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.clip is not None:
            scores = clip_score(images, prompts, self.clip, self.config.batch_size, self.device)
            out["clip_score"] = sum(scores) / len(scores)
        if reference is not None:
            from dgm_eval.api import compute_metrics

            for encoder in self.encoders:
                key = (encoder, id(reference))
                if key not in self.reference_features:
                    self.reference_features[key] = self._features(encoder, reference)
                gen = self._features(encoder, images)
                fd = compute_metrics(self.reference_features[key], gen, metrics=["fd"])["fd"]
                out[FD_NAMES.get(encoder, f"fd_{encoder}")] = float(fd)
        return out


def evaluate_text(
    student_dirs: dict[str, str | Path], prompts_file: str | Path, out: str | Path, config: TextEvalConfig
) -> dict[str, Any]:
    """Evaluate SD/SDXL students (``name → distill run``) on the prompts against their shared teacher.

    Returns:
        ``{"teacher": {nfe, wall_s, clip_score, fid, ...}, "students": {name: {K: {latent_mse, nfe, wall_s,
        clip_score, fid, ...}}}, "prompts": M}`` (also ``summary.json`` in ``out``).

    Raises:
        UserError: no students, students with different teacher settings, K > N, unreadable prompts, or FD asked
            without dgm-eval.
    """
    from direct_cms.distill import STUDENT_FILE
    from direct_cms.lora import without_lora
    from direct_cms.students import StudentTeacher
    from direct_cms.text_sampling import run_config, teacher_for_run

    if not student_dirs:
        raise UserError("pass at least one --student RUN_DIR (the --out of a `distill` run)")
    prompts = _read_prompts(prompts_file)
    configs = {name: run_config(path) for name, path in student_dirs.items()}
    settings = {(c.teacher, c.vae, c.num_intervals, c.solver, c.guidance, c.resolution) for c in configs.values()}
    if len(settings) > 1:
        raise UserError(f"students were distilled with different teacher settings {sorted(settings)}; evaluate apart")
    first = next(iter(configs.values()))
    if max(config.ks) > first.num_intervals or min(config.ks) < 1:
        raise UserError(f"--ks must lie in 1..N={first.num_intervals}, got {config.ks}")
    if config.fd_encoders:
        try:
            import dgm_eval  # noqa: F401
        except ImportError as err:
            raise UserError("--fd-encoders needs dgm-eval: pip install 'direct-cms[eval]'") from err
    if config.precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got {config.precision!r}")
    device = torch.device(config.device or "cpu")
    autocast = torch.autocast(
        device.type, dtype=PRECISIONS[config.precision] or torch.float32, enabled=config.precision != "fp32"
    )
    teacher = teacher_for_run(first)
    teacher.pipe.to(device)
    run = RunDir(out, resume=(Path(out) / "config.json").is_file(), flags=("--overwrite",))
    if not run.resume:
        run.write_config({**asdict(config), "students": {k: str(v) for k, v in student_dirs.items()}}, seed=config.seed)

    # fixed noise, stored once
    side = first.resolution // teacher.vae_scale_factor
    shape = (teacher.latent_channels, side, side)
    noise_path = run.file(NOISE_FILE)
    if noise_path.is_file():
        noise = EvalNoise.from_state(load_checkpoint(noise_path))
        if noise.x_T.shape != (len(prompts), *shape) or noise.renoise.shape[0] < max(config.ks) - 1:
            raise UserError(f"{noise_path} holds noise for another prompt count or latent size; use another --out")
    else:
        noise = EvalNoise.generate(shape, len(prompts), len(prompts), config.seed, max(config.ks))
        save_checkpoint(noise_path, noise.state())
    size = first.resolution  # SDXL micro-conditioning of the run's resolution, no crop
    cond = teacher.encode_prompts(prompts, sdxl_time_ids((size, size), (0, 0), (size, size)), device=device)
    x_T = noise.x_T.to(device)

    # teacher reference: its own DDIM-N at the training w, cached
    key = json.dumps(
        {
            "teacher": first.teacher,
            "vae": first.vae,
            "n": first.num_intervals,
            "solver": first.solver,
            "w": first.guidance,
            "prompts": hashlib.sha256("\n".join(prompts).encode()).hexdigest()[:16],
            "seed": config.seed,
        },
        sort_keys=True,
    )
    ref_path = run.file(REFERENCE_FILE)
    cached = load_checkpoint(ref_path) if ref_path.is_file() else None
    guided = GuidedTeacher(UNetEps(teacher.network), first.guidance, teacher.null_cond(device=device))
    start = time.perf_counter()
    key = json.dumps({**json.loads(key), "precision": config.precision}, sort_keys=True)
    if cached is not None and cached.get("key") == key:
        reference = cached["latents"]
        teacher_wall = float(cached["wall_s"])
    else:
        solver = make_solver(first.solver, teacher.grid(first.num_intervals))
        with autocast:
            reference = teacher_sample(guided, solver, x_T, cond, batch_size=config.batch_size).float().cpu()
        teacher_wall = time.perf_counter() - start
        save_checkpoint(ref_path, {"latents": reference, "key": key, "wall_s": teacher_wall})
    with autocast:
        teacher_images = decode_latents(teacher.vae, reference, config.batch_size)
    scorers = _Scorers(config)
    real = _real_images(config.real_images, len(prompts)) if config.real_images else None
    guided_calls = 2 if first.guidance not in (0.0, 1.0) else 1
    results: dict[str, Any] = {
        "prompts": len(prompts),
        "teacher": {
            "nfe": first.num_intervals * guided_calls * (2 if first.solver == "heun" else 1),
            "wall_s": teacher_wall,
            "latent_mse": 0.0,
            **scorers(teacher_images, prompts, real),
        },
        "students": {},
    }
    scheduler = DirectCMScheduler.from_teacher_config(teacher.scheduler.config, first.num_intervals)
    for name, path in student_dirs.items():
        # the student on the teacher's own UNet (LoRA attached, then removed), so no second pipeline is loaded
        state = load_checkpoint(Path(path) / STUDENT_FILE)
        run_cfg = configs[name]
        network = teacher.network if run_cfg.student == "lora" else copy.deepcopy(teacher.network)
        models = StudentTeacher(network, run_cfg.student, run_cfg.lora_rank, run_cfg.lora_alpha, run_cfg.lora_targets)
        models.load_trainable_state_dict(state["student"])
        models.to(device)
        per_k: dict[str, Any] = {}
        for k in config.ks:
            start = time.perf_counter()
            with autocast:
                latents = student_sample(models.student_eps, scheduler, x_T, cond, k, noise.renoise, config.batch_size)
                latents = latents.float()
            wall = time.perf_counter() - start
            with autocast:
                images = decode_latents(teacher.vae, latents.cpu(), config.batch_size)
            per_k[str(k)] = {
                "latent_mse": ode_error(latents.cpu(), reference),
                "nfe": k,
                "wall_s": wall,
                **scorers(images, prompts, teacher_images),
            }
        results["students"][name] = per_k
        run.log_metrics(student=name, **{f"K{k}/{m}": v for k, r in per_k.items() for m, v in r.items()})
        if run_cfg.student == "lora":
            without_lora(teacher.network, merge=False, inplace=True)
        del models
    run.write_summary(results)
    return results


def format_text_table(results: dict[str, Any]) -> str:
    """The evaluation as a text table: one row per model and K (latent MSE, quality, NFE, wall time)."""
    metrics = [m for m in ("latent_mse", "clip_score", "fid", "fd_dinov2") if m in results["teacher"]]
    metrics += sorted(m for m in results["teacher"] if m.startswith("fd_") and m not in metrics)
    header = ["model", "K", *metrics, "nfe", "wall_s"]
    rows = [["teacher", "N", *(f"{results['teacher'][m]:.4f}" for m in metrics), str(results["teacher"]["nfe"])]]
    rows[0].append(f"{results['teacher']['wall_s']:.2f}")
    for name, per_k in results["students"].items():
        for k, r in per_k.items():
            rows.append(
                [name, k, *(f"{r[m]:.4f}" if m in r else "-" for m in metrics), str(r["nfe"]), f"{r['wall_s']:.2f}"]
            )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [header, *rows]]
    return "\n".join(lines)
