"""The ``sample`` and ``evaluate`` jobs behind the CLI, for built-in and SD/SDXL (text-to-image) students.

Each job takes one config dataclass (the defaults table its CLI verb maps onto) and dispatches on the student:
built-in teachers (digits, ring) use :mod:`direct_cms.experiment`, SD/SDXL students
:mod:`direct_cms.text_sampling` and :mod:`direct_cms.text_evaluation`.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from direct_cms.config import EvaluateConfig, SampleConfig
from sixlab_shared import UserError

logger = logging.getLogger(__name__)

__all__ = ["EvaluateConfig", "SampleConfig", "evaluate", "sample"]


def _is_text_run(student_dir: Path) -> bool:
    from direct_cms.text_sampling import run_config
    from direct_cms.text_teacher import is_pipeline_source

    config = run_config(student_dir)
    return is_pipeline_source(config.teacher, config.revision or None)


def _fresh_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} exists and is not a folder; choose another path")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"{str(out)!r} is not empty; pass --overwrite to replace it, or choose another --out")
        shutil.rmtree(out)


def sample(student_dir: str | Path, out: str | Path, config: SampleConfig, overwrite: bool = False) -> Path:
    """Draw K-step samples from a distilled student into ``out``.

    Built-in students: ``samples.safetensors`` and ``samples.png``. SD/SDXL students (through a diffusers pipeline
    with ``DirectCMScheduler`` and the LoRA): ``sample_000.png``, … and ``prompts.txt``.

    Returns:
        The folder (or figure) written.

    Raises:
        UserError: no finished run, K outside 1..N, prompts given to a built-in student (or missing for an SD/SDXL
            one), or a non-empty ``out`` without ``overwrite``.
    """
    student_dir, out = Path(student_dir), Path(out)
    if _is_text_run(student_dir):
        from direct_cms.text_sampling import run_config, sample_prompts, student_pipeline

        if not config.prompt:
            raise UserError("this student was distilled from an SD/SDXL teacher: pass --prompt TEXT (repeatable)")
        run = run_config(student_dir)
        n = run.num_intervals
        if config.steps > n:
            raise UserError(f"--steps K={config.steps} must lie in 1..N={n} (the distillation grid)")
        _fresh_output(out, overwrite)
        import torch

        dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[config.precision]
        pipe, _ = student_pipeline(student_dir, device=config.device or "cpu", torch_dtype=dtype)
        size = run.resolution  # the resolution the student was distilled at
        images = sample_prompts(pipe, config.prompt, config.steps, config.seed, height=size, width=size)
        out.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            image.save(out / f"sample_{i:03d}.png")
        (out / "prompts.txt").write_text("\n".join(config.prompt) + "\n", encoding="utf-8")
        return out
    if config.prompt:
        raise UserError("--prompt applies to SD/SDXL students; this one was distilled from a built-in teacher")
    from direct_cms.distill import load_student

    _, run, _ = load_student(student_dir)
    if config.steps > run.num_intervals:
        raise UserError(f"--steps K={config.steps} must lie in 1..N={run.num_intervals} (the distillation grid)")
    _fresh_output(out, overwrite)
    from direct_cms.experiment import sample_student

    return sample_student(student_dir, out, config.steps, config.num_samples, config.seed, device=config.device)


def _names(student_dirs: list[Path]) -> dict[str, Path]:
    names: dict[str, Path] = {}
    for path in student_dirs:
        names[path.name if path.name not in names else str(path)] = path
    return names


def evaluate(
    student_dirs: list[str | Path], out: str | Path, config: EvaluateConfig, overwrite: bool = False
) -> tuple[dict[str, Any], str]:
    """Evaluate distilled students against their shared teacher; an existing ``out`` is reused (its stored noise
    and teacher reference) unless ``overwrite`` starts it afresh.

    Returns:
        ``(results, table)``: the results (also ``summary.json``) and the printed comparison table.

    Raises:
        UserError: no or unfinished students, mixed teachers, K > N, or a bad prompts file.
    """
    paths = [Path(p) for p in student_dirs]
    if not paths:
        raise UserError("pass at least one --student RUN_DIR (the --out of a `distill` run)")
    from direct_cms.distill import STUDENT_FILE

    for path in paths:
        if not (path / STUDENT_FILE).is_file():
            raise UserError(f"{str(path)!r} holds no {STUDENT_FILE}; pass the --out of a finished distill run")
    out = Path(out)
    text = [_is_text_run(p) for p in paths]
    if any(text) != all(text):
        raise UserError("evaluate SD/SDXL students and built-in students separately")
    if overwrite and out.is_dir():
        shutil.rmtree(out)
    names = _names(paths)
    if all(text):
        from direct_cms.text_evaluation import TextEvalConfig, evaluate_text, format_text_table

        if not config.prompts:
            raise UserError("SD/SDXL students are evaluated on prompts: pass --prompts FILE (one prompt per line)")
        text_config = TextEvalConfig(
            ks=list(config.ks),
            seed=config.seed,
            clip_model=config.clip_model,
            fd_encoders=list(config.fd_encoders),
            real_images=config.real_images,
            batch_size=config.batch_size,
            precision=config.precision,
            device=config.device,
        )
        results = evaluate_text(names, config.prompts, out, text_config)
        return results, format_text_table(results)
    if config.prompts:
        raise UserError("--prompts applies to SD/SDXL students; these were distilled from a built-in teacher")
    from direct_cms.experiment import EvalConfig, evaluate_students, format_table

    eval_config = EvalConfig(
        num_samples=config.num_samples,
        ks=list(config.ks),
        sanity_samples=config.sanity_samples,
        seed=config.seed,
        sanity_intervals=config.sanity_intervals,
        classifier_steps=config.classifier_steps,
    )
    results = evaluate_students(
        names, out, eval_config, classifier_path=config.classifier or None, device=config.device
    )
    summary = {
        "teacher": {k: (v, 0.0) for k, v in results["teacher"].items()},
        "students": {
            n: {k: {m: (v, 0.0) for m, v in r.items()} for k, r in per.items()}
            for n, per in results["students"].items()
        },
        "training": {},
    }
    dataset = "digits" if "fd_real" in results["teacher"] else "ring"
    logger.debug("evaluate config %s", asdict(config))
    return results, format_table(summary, dataset)
